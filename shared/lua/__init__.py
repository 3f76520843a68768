"""The Lua scripts, each loaded with lib.lua (the vocabulary they share) in front of it."""

from importlib import resources


def load_script(name: str, *, cluster: bool = False, split_queue: bool = False) -> str:
    """The script `name`, for a Redis Cluster (events notified per shard) or not, and with the job
    queue on a Redis of its own (jobs go through the session's outbox) or not: see lib.lua."""
    topology = (
        f"local PUBLISH_EVENTS, SPLIT_QUEUE = '{'SPUBLISH' if cluster else 'PUBLISH'}', {str(split_queue).lower()}\n"
    )
    lua = resources.files(__name__)
    return topology + lua.joinpath("lib.lua").read_text() + lua.joinpath(f"{name}.lua").read_text()
