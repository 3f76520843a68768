"""What tokentail borrows from arq's, redis-py's and uvicorn's insides, pinned: the source of each
function it copies, overrides or calls past the public API (a hash of it), and each attribute it
uses. A new release that changes one fails here, naming it: read the change against the module that
relies on it (worker/process/arq_shell.py; shared/connections/round_trips.py and gateway/live/pubsub.py for redis-py;
gateway/protocol.py for uvicorn), adapt that module, then the hash. A release that leaves them as
they are passes."""

import hashlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from arq.worker import Worker
from redis._parsers.base import BaseParser
from redis.asyncio.cluster import ClusterNode, NodesManager
from redis.asyncio.connection import AbstractConnection, Connection, ConnectionPool
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

ROOT = Path(__file__).resolve().parents[3]

SOURCES: list[tuple[Any, str, str, str]] = [
    # arq: the run body copied as `run_claimed`, and what the shell overrides (worker/process/arq_shell.py, main.py)
    (Worker, "run_job", "589a19059ff84ee7", "copied as ClaimedJobRun.run_claimed"),
    (Worker, "_poll_iteration", "f8d39d823a0a59f2", "replaced by BatchedPickup's and TokentailWorker's"),
    (Worker, "finish_job", "903f09c92830d3fd", "overridden: its arguments become a joined Finish"),
    (Worker, "finish_failed_job", "3e16087f318a7acf", "overridden: its arguments become a joined Finish"),
    (Worker, "close", "5bcc9cb356680829", "extended: the finishes and the worker's tasks end first"),
    (Worker, "_release_sem_dec_counter_on_complete", "0ed101482e942c33", "extended: a freed slot polls again"),
    # redis-py: the connections the joined round trips (shared/connections/round_trips.py) and the hub
    # (gateway/live/pubsub.py) read by protocols of their own (shared/connections/taken_over.py)
    (AbstractConnection, "send_packed_command", "cad238c0be555d05", "a round trip on a connection that is no socket"),
    (AbstractConnection, "read_response", "aabcda8ed58d0a36", "reads each reply of it"),
    (AbstractConnection, "connect", "04fabbbd44943f68", "opens the round trips' connection again after it was lost"),
    (BaseParser, "parse_error", "b465d52011ff2f49", "makes an error reply the exception redis-py would raise"),
    (AbstractConnection, "pack_command", "9a0e503fdcf56314", "packs the hub's (un)subscriptions"),
    (Connection, "_connect", "24cd655d5f27ddbb", "opens the hub's connections: a stream writer on a transport"),
    (AbstractConnection, "on_connect", "e9580eed32f4bed0", "reads every reply of its handshake before the hub reads"),
    (AbstractConnection, "disconnect", "48185738b741ade9", "closes the hub's (nowait: its transport is the hub's)"),
    # uvicorn: what the gateway's direct body writes do as `send` does (gateway/protocol.py)
    (RequestResponseCycle, "send", "abdd8601b326a8da", "DirectBody writes a body chunk as it does, in its state"),
    (HttpToolsProtocol, "on_headers_complete", "1ea8589acfad92d8", "makes the cycle a DirectBody writes to"),
    (ConnectionPool, "get_connection", "4876bc7de473dbc8", "the one connection of the round trips"),
    # redis-py's cluster client: the round trips' connection per primary is one of its node's
    # (shared/connections/round_trips.py `_NodeRoundTrips`), routed by its slot map
    (ClusterNode, "acquire_connection", "bbf879f60c257212", "a connection of the node's, closed with it"),
    (ClusterNode, "disconnect", "3314d0f3c07e79c0", "closes the node's connections as it runs (rehome: not ours)"),
    (NodesManager, "initialize", "c7bd775099266d47", "makes its nodes anew, the old ones closed in tasks"),
    (NodesManager, "set_nodes", "c47a95bd56266550", "the tasks that close the old nodes"),
    (NodesManager, "get_node_from_slot", "2556008b81632835", "a slot's primary, a MOVED applied first"),
    (NodesManager, "_update_moved_slots", "fbe61536684c2491", "applies a MOVED to the slot map (moved())"),
]


@pytest.mark.parametrize(("owner", "name", "pinned", "why"), SOURCES, ids=lambda value: getattr(value, "__name__", ""))
def test_the_source_tokentail_relies_on_is_the_one_it_was_read_against(
    owner: Any, name: str, pinned: str, why: str
) -> None:
    source = inspect.getsource(getattr(owner, name))
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == pinned, f"{owner.__qualname__}.{name} changed ({why})"


def _used_and_defined(path: Path, class_names: set[str]) -> tuple[set[str], set[str]]:
    """The `self.<name>`s the classes `class_names` of a module use, and the names they define."""
    source = path.read_text()
    used, defined = set(), set()
    for block in re.split(r"\n(?=class )", source):
        if (match := re.match(r"class (\w+)", block)) and match.group(1) in class_names:
            used |= set(re.findall(r"self\.(\w+)", block))
            defined |= set(re.findall(r"self\.(\w+)(?:: [^=\n]+)? = ", block))
            defined |= set(re.findall(r"\n    (?:async )?def (\w+)", block))
    return used, defined


def test_every_attribute_of_arqs_worker_the_shell_uses_exists() -> None:
    used, defined = set(), set()
    for path, classes in (
        (ROOT / "worker/process/arq_shell.py", {"ClaimedJobRun", "BatchedPickup"}),
        (ROOT / "worker/process/main.py", {"TokentailWorker"}),
    ):
        module_used, module_defined = _used_and_defined(path, classes)
        used |= module_used
        defined |= module_defined
    arqs = set(dir(Worker)) | set(re.findall(r"self\.(\w+)(?:: [^=\n]+)? = ", inspect.getsource(Worker.__init__)))
    borrowed = used - defined
    assert len(borrowed) > 20  # the shell's reach into arq: the check below reads real names
    assert sorted(borrowed - arqs) == []


def test_the_hub_writes_on_the_connection_redis_py_opens() -> None:
    # gateway/live/pubsub.py writes its (un)subscriptions on the connection's own stream writer.
    assert "self._writer" in inspect.getsource(AbstractConnection)


def test_the_hub_reads_the_transport_of_the_connection_redis_py_opens() -> None:
    # gateway/live/pubsub.py hands the transport under the connection's stream writer to its own protocol.
    assert "self._writer = writer" in inspect.getsource(Connection._connect)


def test_the_cluster_round_trips_read_attributes_redis_py_s_nodes_have() -> None:
    # shared/connections/round_trips.py: a node's connections (rehome), the slot map, a MOVED to apply.
    assert {"_connections", "name"} <= set(ClusterNode.__slots__)
    assert {"nodes_cache", "slots_cache", "default_node", "_moved_exception"} <= set(NodesManager.__slots__)


def test_every_attribute_of_uvicorns_cycle_a_direct_body_reads_exists() -> None:
    source = (ROOT / "gateway/protocol.py").read_text()
    block = source[source.index("class DirectBody") : source.index("class GatewayHttpProtocol")]
    used = set(re.findall(r"cycle\.(\w+)", block))
    assert used >= {"flow", "transport", "chunked_encoding", "response_complete", "disconnected"}
    cycles = set(re.findall(r"self\.(\w+)(?:: [^=\n]+)? = ", inspect.getsource(RequestResponseCycle.__init__)))
    assert sorted(used - cycles) == []
    assert "self.write_paused = " in inspect.getsource(FlowControl.__init__)
    protocol = inspect.getsource(HttpToolsProtocol)
    assert "self.cycle = RequestResponseCycle(" in protocol and "self.scope = {" in protocol
