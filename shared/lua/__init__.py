"""The Lua scripts, each loaded with lib.lua (the vocabulary they share) in front of it."""

from importlib import resources


def load_script(name: str, *, cluster: bool = False, split_queue: bool = False, archive: bool = False) -> str:
    """The script `name`, for a Redis Cluster (events notified per shard) or not, with the job queue
    on a Redis of its own (jobs go through the session's outbox) or not, and with an archive (streams
    trimmed only past what it has, sessions expired by the archiver) or not: see lib.lua."""
    publish, split, archived = "SPUBLISH" if cluster else "PUBLISH", str(split_queue).lower(), str(archive).lower()
    topology = f"local PUBLISH_EVENTS, SPLIT_QUEUE, ARCHIVE = '{publish}', {split}, {archived}\n"
    lua = resources.files(__name__)
    return topology + lua.joinpath("lib.lua").read_text() + lua.joinpath(f"{name}.lua").read_text()
