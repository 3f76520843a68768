"""The gateway's spans, exported by real gateway and worker processes to a real OTLP receiver: a
caller's trace context (HTTP `traceparent`, MCP's `_meta`, A2A's header) continued by the request's
server span into the producer span that queues the run; a server span that lasts as long as its
stream; a span per client connection, in every transport, linked to the run spans of the runs it
carried, across a drop and a resume on another gateway; and the time to first delta as a user feels
it, counted once per run whichever gateways wrote it, with an exemplar naming the run's trace."""

import asyncio
import json
from collections.abc import Awaitable, Iterator
from typing import Any

import httpx
import httpx2
import pytest
import websockets
from a2a.client import ClientConfig, create_client
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest
from mcp.types import CallToolResult
from redis.asyncio import Redis

from tests.clients.mcp_client import connect
from tests.clients.sse_client import read_events
from tests.e2e.conftest import Stack
from tests.servers.otlp_receiver import OtlpReceiver, Span, otlp_receiver
from tests.support.waiting import eventually
from tokentail.shared.plumbing import tracing
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import decode_run

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER = "b7ad6b7169203331"  # the caller's own span, the parent it sends
TRACEPARENT = f"00-{TRACE_ID}-{CALLER}-01"
QUICK = {"tokens": 5}
SLOW = {"tokens": 60, "tokens_per_second": 40}  # about 1.5 s of deltas


class Traced:
    def __init__(self, stack: Stack, receiver: OtlpReceiver) -> None:
        self.stack = stack
        self.receiver = receiver
        self.urls = [stack.gateway(), stack.gateway()]
        stack.worker()
        stack.wait_for_workers(1)


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    with otlp_receiver() as receiver:
        stack = Stack(
            tmp_path_factory.mktemp("traces"),
            TOKENTAIL_AGENTS=json.dumps({"greet": "tests.agents.mcp_agents:greet", "held": "tests.support.gates:held"}),
            **receiver.env(),
        )
        try:
            yield Traced(stack, receiver)
        finally:
            stack.close()


def one(spans: list[Span], **where: Any) -> Span:
    (found,) = [s for s in spans if all(getattr(s, key) == value for key, value in where.items())]
    return found


def streams_of(session_id: str) -> Any:
    def found(spans: list[Span]) -> list[Span]:
        return [
            s for s in spans if s.name.startswith("stream ") and s.attributes["gen_ai.conversation.id"] == session_id
        ]

    return found


def run_span_id(trace_id: str, run_id: str) -> str:
    return f"{tracing.derived_span_id(int(trace_id, 16), run_id):016x}"


async def test_a_callers_traceparent_continues_into_the_producer_span_and_the_stream_is_linked_to_the_run(
    traced: Traced,
) -> None:
    async with httpx2.AsyncClient(base_url=traced.urls[0], timeout=30) as client:
        created = (
            await client.post(
                "/v1/sessions", json={"input": "hi", "params": QUICK}, headers={"traceparent": TRACEPARENT}
            )
        ).json()
        received = await read_events(client, created["events_url"])
    session_id, run_id = created["session_id"], created["run_id"]
    assert received.events[-1][1] == "run.completed"

    def arrived(spans: list[Span]) -> bool:
        return any(s.name.startswith("send ") for s in spans if s.trace_id == TRACE_ID) and bool(
            streams_of(session_id)(spans)
        )

    spans = traced.receiver.wait_for(arrived)
    in_trace = [s for s in spans if s.trace_id == TRACE_ID]
    server = one(in_trace, name="POST /v1/sessions")  # a hot route, named by its route as FastAPI's are
    assert (server.kind, server.parent_id, server.service) == ("server", CALLER, "tokentail-gateway")
    assert server.attributes["http.route"] == "/v1/sessions"
    producer = one(in_trace, kind="producer")
    assert producer.parent_id == server.span_id
    assert producer.attributes["messaging.message.id"] == run_id
    assert producer.attributes["gen_ai.conversation.id"] == session_id

    # The queue's other end, in the worker: the run's CONSUMER span, the producer's child, so that a
    # service graph (Tempo's, Jaeger's) draws the edge gateway -> worker through the queue.
    def consumers(spans: list[Span]) -> list[Span]:
        return [s for s in spans if s.trace_id == TRACE_ID and s.kind == "consumer"]

    (run,) = consumers(traced.receiver.wait_for(lambda spans: bool(consumers(spans))))
    assert (run.name, run.service, run.parent_id) == ("invoke_agent assistant", "tokentail-worker", producer.span_id)
    queue = {key: producer.attributes[key] for key in ("messaging.system", "messaging.destination.name")}
    assert {key: run.attributes[key] for key in queue} == queue
    assert run.attributes["messaging.operation.type"] == "process" and run.attributes["messaging.message.id"] == run_id

    (stream,) = streams_of(session_id)(spans)
    get = one(spans, span_id=stream.parent_id)  # the request's server span, which lasts as long as its stream
    assert get.name == "GET /v1/sessions/{session_id}/events" and get.kind == "server"
    assert get.status != "error" and get.attributes["http.response.status_code"] == 200
    assert get.start_ns <= stream.start_ns and stream.end_ns <= get.end_ns
    assert stream.name == "stream sse" and stream.trace_id == get.trace_id != TRACE_ID
    assert stream.attributes["tokentail.transport"] == "sse"
    assert stream.attributes["tokentail.stream.events"] == len(received.events)
    assert stream.attributes["tokentail.stream.bytes"] > 0
    assert stream.attributes["tokentail.stream.end"] == "finished"
    assert stream.attributes["tokentail.stream.resumed"] is False
    assert [(link.trace_id, link.span_id) for link in stream.links] == [(TRACE_ID, run_span_id(TRACE_ID, run_id))]
    assert stream.links[0].attributes == {"tokentail.run.id": run_id}


async def test_a_run_keeps_of_its_callers_trace_context_what_the_trace_needs_bounded(traced: Traced) -> None:
    """Issue 52: a caller's tracestate (32 members of 250 characters) and baggage were stored in the
    run's record, and 608 bytes became 16,964. The record keeps the producer span's traceparent and a
    tracestate within W3C Trace Context's limits (here none: each member is over 128 characters), no
    baggage; the run's spans still continue the caller's trace."""
    trace_id = "5" * 32
    burden = {
        "tracestate": ",".join(f"k{i:02d}=" + "v" * 246 for i in range(32)),
        "baggage": ",".join(f"b{i:02d}=" + "x" * 246 for i in range(30)),
    }
    stack = traced.stack
    runs: list[tuple[str, bytes]] = []
    async with (
        httpx2.AsyncClient(base_url=traced.urls[0], timeout=30) as client,
        Redis.from_url(stack.env["TOKENTAIL_REDIS_URL"]) as redis,
    ):
        for extra in ({}, burden):
            headers = {"traceparent": f"00-{trace_id}-{CALLER}-01", **extra}
            created = (await client.post("/v1/sessions", json={"input": "hi", "params": QUICK}, headers=headers)).json()
            assert (await read_events(client, created["events_url"])).events[-1][1] == "run.completed"
            key = Keys(stack.env["TOKENTAIL_KEY_PREFIX"]).session(created["session_id"]).runs
            runs.append((created["run_id"], await redis.hget(key, created["run_id"])))
    (_, plain), (run_id, burdened) = runs
    spans = traced.receiver.wait_for(
        lambda spans: any(
            s.name.startswith("invoke_agent") and s.attributes["tokentail.run.id"] == run_id for s in spans
        )
    )
    of_run = [
        s for s in spans if run_id in (s.attributes.get("messaging.message.id"), s.attributes.get("tokentail.run.id"))
    ]
    producer = one(of_run, kind="producer")
    assert decode_run(burdened).trace == {"traceparent": f"00-{trace_id}-{producer.span_id}-01"}
    assert len(burdened) < len(plain) + 16  # as small as a record with no tracestate or baggage (its times aside)
    run = one(of_run, name="invoke_agent assistant")
    assert producer.trace_id == run.trace_id == trace_id and run.parent_id == producer.span_id


async def test_a_client_that_drops_and_resumes_on_another_gateway_has_two_spans_linked_to_the_run(
    traced: Traced,
) -> None:
    first, second = traced.urls
    async with httpx2.AsyncClient(timeout=30) as client:
        created = (await client.post(f"{first}/v1/sessions", json={"input": "hi", "agent": "held"})).json()
        path = created["events_url"].removeprefix(first)
        # Queued, started, a delta: then the run waits at its gate, and the client drops the connection;
        # the run goes on once the gateway has seen it leave (its stream's span ended).
        before = await read_events(client, first + path, limit=3)
        traced.receiver.wait_for(lambda spans: len(streams_of(created["session_id"])(spans)) == 1)
        assert (await client.get(f"{first}/v1/sessions/{created['session_id']}")).json()["status"] == "running"
        traced.stack.gates.release(created["run_id"])
        after = await read_events(client, second + path, last_event_id=before.ids[-1])
    assert after.events[-1][1] == "run.completed"
    session_id, run_id = created["session_id"], created["run_id"]

    spans = traced.receiver.wait_for(lambda spans: len(streams_of(session_id)(spans)) == 2)
    dropped, resumed = sorted(streams_of(session_id)(spans), key=lambda s: s.start_ns)
    assert dropped.attributes["tokentail.stream.end"] == "client_left"
    assert one(spans, span_id=dropped.parent_id).status == "unset"  # a client that leaves is no server error
    assert dropped.attributes["tokentail.stream.resumed"] is False
    assert dropped.attributes["tokentail.stream.after"] == 0
    assert resumed.attributes["tokentail.stream.resumed"] is True
    assert resumed.attributes["tokentail.stream.after"] == before.ids[-1]
    assert resumed.attributes["tokentail.stream.events"] == len(after.events)
    assert resumed.attributes["tokentail.stream.end"] == "finished"
    assert dropped.trace_id != resumed.trace_id  # each its own request's trace
    (producer,) = [s for s in spans if s.kind == "producer" and s.attributes["messaging.message.id"] == run_id]
    run_span = (producer.trace_id, run_span_id(producer.trace_id, run_id))
    assert [(link.trace_id, link.span_id) for link in dropped.links] == [run_span]
    assert [(link.trace_id, link.span_id) for link in resumed.links] == [run_span]
    # The clients' spans are in their own traces, linked: the run's trace holds none of them, and the
    # drop took nothing from it: its run span (the one linked to) and its one attempt are all there.
    run_trace = traced.receiver.wait_for(
        lambda spans: any(s.name == "invoke_agent held" and s.trace_id == producer.trace_id for s in spans)
    )
    in_run_trace = [s for s in run_trace if s.trace_id == producer.trace_id]
    assert not [s for s in in_run_trace if s.name.startswith("stream ")]
    run = one(in_run_trace, name="invoke_agent held")
    assert (run.trace_id, run.span_id) == run_span and run.parent_id == producer.span_id
    assert run.attributes["tokentail.run.status"] == "completed"
    assert one(in_run_trace, name="attempt 1 start").parent_id == run.span_id


async def test_ndjson_and_socket_connections_have_their_spans(traced: Traced) -> None:
    url = traced.urls[0]
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        created = (await client.post("/v1/sessions", json={"input": "hi", "params": QUICK})).json()
        session_id = created["session_id"]
        async with client.stream("GET", created["events_url"], headers={"Accept": "application/x-ndjson"}) as lines:
            ndjson = [json.loads(line) async for line in lines.aiter_lines() if line]
    assert ndjson[-1]["event"] == "run.completed"
    async with websockets.connect(f"ws{url.removeprefix('http')}/v1/sessions/{session_id}/ws?last_event_id=2") as ws:
        while json.loads(await ws.recv()).get("event") != "run.completed":
            pass

    spans = traced.receiver.wait_for(lambda spans: len(streams_of(session_id)(spans)) == 2)
    by_transport = {s.attributes["tokentail.transport"]: s for s in streams_of(session_id)(spans)}
    assert set(by_transport) == {"ndjson", "ws"}
    assert by_transport["ndjson"].attributes["tokentail.stream.events"] == len(ndjson)
    assert by_transport["ndjson"].attributes["tokentail.stream.end"] == "finished"
    socket = by_transport["ws"]
    assert socket.name == "stream ws"
    assert socket.attributes["tokentail.stream.after"] == 2 and socket.attributes["tokentail.stream.resumed"] is True
    assert socket.attributes["tokentail.stream.events"] == len(ndjson) - 2
    assert socket.attributes["tokentail.stream.end"] == "cancelled"  # the client closed the socket
    assert one(spans, span_id=socket.parent_id).name == "WS /v1/sessions/{session_id}/ws"
    assert len(socket.links) == 1


@pytest.mark.mcp
async def test_mcp_metas_traceparent_is_the_runs_trace(traced: Traced) -> None:
    trace_id = "1" * 32
    async with connect(traced.urls[0], tasks=False) as client:
        meta: Any = {"traceparent": f"00-{trace_id}-{CALLER}-01"}
        result = await client.session.call_tool("greet", {"name": "Ada"}, meta=meta)
    assert isinstance(result, CallToolResult) and not result.is_error

    def arrived(spans: list[Span]) -> bool:
        names = {s.name for s in spans if s.trace_id == trace_id}
        return {"tools/call greet", "invoke_agent greet"} <= names and any(n.startswith("send ") for n in names)

    traced.receiver.wait_for(arrived)
    in_trace = traced.receiver.trace(trace_id)
    call = one(in_trace, name="tools/call greet")  # the mcp SDK's span, its parent from `_meta`
    assert call.parent_id == CALLER and call.scope == "mcp-python-sdk"
    producer = one(in_trace, kind="producer")
    assert producer.parent_id == call.span_id
    assert one(in_trace, name="invoke_agent greet").parent_id == producer.span_id  # the worker's, in the caller's trace
    # The call waits for its run as a stream would, unless the run had ended when its task was read.
    for waiting in [s for s in in_trace if s.name == "stream mcp"]:
        assert waiting.parent_id == call.span_id and waiting.attributes["tokentail.stream.end"] == "closed"


@pytest.mark.a2a
@pytest.mark.parametrize(
    ("binding", "trace_id", "route"),
    [("JSONRPC", "2" * 32, "/a2a/{agent}"), ("HTTP+JSON", "4" * 32, "/a2a/{agent}/message:stream")],
)
async def test_an_a2a_callers_traceparent_is_the_runs_trace(
    traced: Traced, binding: str, trace_id: str, route: str
) -> None:
    headers = {"traceparent": f"00-{trace_id}-{CALLER}-01"}
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        config = ClientConfig(httpx_client=http, supported_protocol_bindings=[binding])
        client = await create_client(traced.urls[0], config)
        message = Message(message_id="m-1", role=Role.ROLE_USER, parts=[Part(text="hi")])
        events = [event async for event in client.send_message(SendMessageRequest(message=message))]
    assert events

    def arrived(spans: list[Span]) -> bool:
        names = {s.name for s in spans if s.trace_id == trace_id}
        return "stream a2a" in names and {"POST", "send"} <= {name.split(" ")[0] for name in names}

    traced.receiver.wait_for(arrived)
    in_trace = traced.receiver.trace(trace_id)
    by_id = {s.span_id: s for s in in_trace}
    # The producer span, under the a2a-sdk's own spans, under the request's server span, under the caller's.
    ancestors, span = [], one(in_trace, kind="producer")
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        ancestors.append(span)
    assert span.parent_id == CALLER
    assert (span.name, span.scope, span.kind) == (f"POST {route}", "fastapi", "server")
    stream = one(in_trace, name="stream a2a")  # the message's stream, a child of the same request
    assert stream.parent_id in by_id and stream.attributes["tokentail.stream.end"] in ("finished", "closed")
    assert len(stream.links) == 1


async def test_time_to_first_delta_is_counted_once_per_run_with_an_exemplar(traced: Traced) -> None:
    first, second = traced.urls
    async with httpx2.AsyncClient(timeout=30) as client:

        async def count() -> float:
            total = 0.0
            for url in traced.urls:
                text = (await client.get(f"{url}/metrics")).text
                total += sum(
                    float(line.split()[-1])
                    for line in text.splitlines()
                    if line.startswith("tokentail_first_delta_seconds_count")
                )
            return total

        counted = await count()
        created = (
            await client.post(
                f"{first}/v1/sessions",
                json={"input": "hi", "params": SLOW},
                headers={"traceparent": TRACEPARENT.replace(TRACE_ID, "3" * 32)},
            )
        ).json()
        path = created["events_url"].removeprefix(first)
        both = await asyncio.gather(read_events(client, first + path), read_events(client, second + path))
        assert all(received.events[-1][1] == "run.completed" for received in both)
        # Each gateway checked the run's key as it wrote its first delta, long before the run ended.
        await eventually(lambda: once(count(), counted + 1), what="the run counted")
        assert await count() == counted + 1  # two clients on two gateways: one run, counted once

        exemplars = []
        for url in traced.urls:
            scraped = await client.get(
                f"{url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
            )
            assert scraped.headers["content-type"].startswith("application/openmetrics-text")
            exemplars += [
                line
                for line in scraped.text.splitlines()
                if line.startswith("tokentail_first_delta_seconds_bucket") and "#" in line
            ]
    assert any(f'trace_id="{"3" * 32}"' in line for line in exemplars)


async def once(counting: Awaitable[float], expected: float) -> None:
    assert await counting == expected
