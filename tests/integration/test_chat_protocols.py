"""The chat UI protocols' endpoints (AI SDK, AG-UI) and NDJSON, on a real gateway, worker and Redis.

The real JavaScript clients read these same endpoints in tests/node."""

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest
import websockets
from pydantic import SecretStr

from tests.fixtures.stack import Gateway
from tests.support.gates import Gates
from tests.support.waiting import eventually, scaled
from tokentail.shared.plumbing.settings import Settings
from tokentail.worker.process.main import TokentailWorker

pytestmark = [pytest.mark.ai_sdk, pytest.mark.ag_ui]


KEY_A = "acme-key-0123456789abcdef"
KEY_B = "beta-key-0123456789abcdef"
SECRET = "s" * 40
HELD = {"agent": "held"}  # a session whose runs wait at their gate (tests/support/gates.py) until released


def ui_message(text: str, role: str = "user") -> dict[str, Any]:
    return {"id": f"m-{len(text)}", "role": role, "parts": [{"type": "text", "text": text}]}


def chat_body(chat_id: str, text: str = "hello") -> dict[str, Any]:
    return {"id": chat_id, "messages": [ui_message(text)], "trigger": "submit-message"}


def agent_input(thread_id: str, text: str = "hello") -> dict[str, Any]:
    return {
        "threadId": thread_id,
        "runId": "client-run",
        "state": {},
        "messages": [{"id": "u1", "role": "user", "content": text}],
        "tools": [],
        "context": [],
        "forwardedProps": {},
    }


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


Frame = tuple[str | None, Any]  # (id, parsed data; None for `[DONE]`)


class SseReader:
    """The frames of a streamed response, read in parts: up to a point, then on."""

    def __init__(self, response: httpx2.Response) -> None:
        self._chunks = response.aiter_text()
        self._buffer = ""

    async def read(self, until: Callable[[list[Frame]], bool] | None = None) -> list[Frame]:
        """Frames until the stream ends, or until `until` says so."""
        frames: list[Frame] = []
        async for text in self._chunks:
            self._buffer += text
            while "\n\n" in self._buffer:
                frame, self._buffer = self._buffer.split("\n\n", 1)
                lines = [line for line in frame.split("\n") if ": " in line and not line.startswith(":")]
                fields = dict(line.split(": ", 1) for line in lines)
                if "data" in fields:
                    data = None if fields["data"] == "[DONE]" else json.loads(fields["data"])
                    frames.append((fields.get("id"), data))
            if until is not None and until(frames):
                break
        return frames


async def sse_frames(response: httpx2.Response, until: Callable[[list[Frame]], bool] | None = None) -> list[Frame]:
    return await SseReader(response).read(until)


def types(frames: list[Frame]) -> list[str]:
    return [data["type"] for _, data in frames if data is not None]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every gateway and worker here knows the agent `held`."""
    return settings.model_copy(update={"agents": {"held": "tests.support.gates:held"}})


async def active_run(http: httpx2.AsyncClient, chat_id: str) -> str:
    """The id of the run the chat's session has going."""
    session_id = (await http.post("/v1/sessions", json={"chat_id": chat_id})).json()["session_id"]
    run_id: str = (await http.get(f"/v1/sessions/{session_id}")).json()["active_run_id"]
    return run_id


@pytest.fixture
async def http(gateway: Gateway, worker: TokentailWorker) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=15) as client:
        yield client


async def test_ai_sdk_send_streams_the_run_to_done_and_the_chat_keeps_its_history(http: httpx2.AsyncClient) -> None:
    async with http.stream("POST", "/v1/ai-sdk/chat", json=chat_body("chat-1", "first question")) as response:
        assert response.status_code == 200
        assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
        frames = await sse_frames(response)
    assert frames[-1] == (None, None)  # data: [DONE]
    assert types(frames)[:3] == ["start", "start-step", "text-start"]
    assert types(frames)[-3:] == ["text-end", "finish-step", "finish"]
    run_id = frames[0][1]["messageId"]
    text = "".join(data["delta"] for _, data in frames if data and data["type"] == "text-delta")
    messages = (await http.get("/v1/ai-sdk/chat/chat-1/messages")).json()
    assert messages == [
        {"id": f"{run_id}-input", "role": "user", "parts": [{"type": "text", "text": "first question"}]},
        {"id": run_id, "role": "assistant", "parts": [{"type": "text", "text": text}]},
    ]
    # The next message of the same chat id is the next turn of the same session.
    async with http.stream("POST", "/v1/ai-sdk/chat", json=chat_body("chat-1", "second")) as response:
        await sse_frames(response)
    assert len((await http.get("/v1/ai-sdk/chat/chat-1/messages")).json()) == 4
    assert (await http.get("/v1/ai-sdk/chat/never-used/messages")).json() == []


async def test_ai_sdk_reconnect_replays_the_active_answer_from_its_start_else_204(
    start_gateway: Callable[..., Any], worker: TokentailWorker, gates: Gates
) -> None:
    # A short replay window (so that the 204 comes soon), but one a busy machine's next request is inside.
    gateway: Gateway = await start_gateway(ui_replay_seconds=scaled(1.0))
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=15) as http:
        assert (await http.get("/v1/ai-sdk/chat/chat-2/stream")).status_code == 204  # no such chat yet
        created = await http.post("/v1/sessions", json={"chat_id": "chat-2", **HELD})
        assert created.status_code == 201
        async with http.stream("POST", "/v1/ai-sdk/chat", json=chat_body("chat-2")) as response:
            first = await sse_frames(response, until=lambda frames: "text-delta" in types(frames))
        # The sender hung up mid-answer (the run waits at its gate); the transport's reconnect gets the
        # whole answer, from `start`.
        async with http.stream("GET", "/v1/ai-sdk/chat/chat-2/stream") as response:
            assert response.status_code == 200
            gates.release(await active_run(http, "chat-2"))
            replayed = await sse_frames(response)
        assert replayed[0] == first[0]  # the same `start`, so the client replaces its partial message
        assert replayed[: len(first)] == first
        assert types(replayed)[-1] == "finish"
        # Moments after the end it still replays (a client that dropped just before it); later, 204.
        assert (await http.get("/v1/ai-sdk/chat/chat-2/stream")).status_code == 200

        async def over() -> None:
            assert (await http.get("/v1/ai-sdk/chat/chat-2/stream")).status_code == 204

        await eventually(over)


@pytest.mark.usefixtures("gates")
async def test_ai_sdk_stop_cancels_the_run_and_the_stream_says_abort(http: httpx2.AsyncClient) -> None:
    await http.post("/v1/sessions", json={"chat_id": "chat-3", **HELD})  # its run waits at its gate for the stop
    async with http.stream("POST", "/v1/ai-sdk/chat", json=chat_body("chat-3")) as response:
        reader = SseReader(response)
        await reader.read(until=lambda frames: "text-delta" in types(frames))
        stopped = await http.post("/v1/ai-sdk/chat/chat-3/stop")
        assert stopped.status_code == 202 and stopped.json()["status"] in ("cancelling", "cancelled")
        rest = await reader.read()
    assert types(rest)[-2:] == ["text-end", "abort"]
    session_id = (await http.post("/v1/sessions", json={"chat_id": "chat-3"})).json()["session_id"]
    assert (await http.get(f"/v1/sessions/{session_id}")).json()["runs"][0]["status"] == "cancelled"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"id": "bad id!", "messages": [ui_message("hi")]}, "chat id"),
        ({"id": "chat-4", "messages": [ui_message("hi", role="assistant")]}, "the last message must be the user's"),
        ({"id": "chat-4", "messages": []}, "the last message must be the user's"),
    ],
)
async def test_ai_sdk_refuses_what_it_cannot_answer(
    http: httpx2.AsyncClient, body: dict[str, Any], message: str
) -> None:
    response = await http.post("/v1/ai-sdk/chat", json=body)
    assert response.status_code == 422
    assert message in response.json()["error"]["message"]
    assert (await http.get("/v1/ai-sdk/chat/chat-4/messages")).json() == []  # nothing was queued


async def test_ag_ui_run_and_a_reader_resuming_by_id_get_every_event_once(http: httpx2.AsyncClient) -> None:
    # Many deltas, a few seconds of them; the resume holds whether the run still goes on then or not.
    await http.post("/v1/sessions", json={"chat_id": "thread-1", "params": {"tokens": 300, "tokens_per_second": 40}})
    async with http.stream("POST", "/v1/ag-ui", json=agent_input("thread-1")) as response:
        assert response.status_code == 200
        head = await sse_frames(response, until=lambda frames: len(frames) >= 5)
    assert all(frame_id is not None for frame_id, _ in head), "every frame has an id"
    last_id = head[-1][0]
    assert last_id is not None
    async with http.stream("GET", "/v1/ag-ui/thread-1", headers={"Last-Event-ID": last_id}) as response:
        rest = await sse_frames(response)
    # No gap, no duplicate: exactly the frames of one read of the whole thread (ids skip the events
    # AG-UI has no frame for, such as run.started after RUN_STARTED).
    async with http.stream("GET", "/v1/ag-ui/thread-1", params={"last_event_id": "0"}) as response:
        assert head + rest == await sse_frames(response)
    events = [data for _, data in head + rest]
    assert [e["type"] for e in events].count("TEXT_MESSAGE_START") == 1  # the resumed message stays one
    assert events[0]["type"] == "RUN_STARTED" and events[-1]["type"] == "RUN_FINISHED"
    assert events[0]["threadId"] == "thread-1" and events[-1]["outcome"] == {"type": "success"}
    # Connecting without an id, moments after: the run again, opened by the thread so far.
    async with http.stream("GET", "/v1/ag-ui/thread-1") as response:
        connected = [data for _, data in await sse_frames(response)]
    assert [e["type"] for e in connected[:2]] == ["RUN_STARTED", "MESSAGES_SNAPSHOT"]
    assert connected[1]["messages"] == [{"id": f"{events[0]['runId']}-input", "role": "user", "content": "hello"}]
    assert connected[2:] == events[1:]
    assert (await http.get("/v1/ag-ui/no-such-thread")).status_code == 204


async def test_ndjson_is_the_same_stream_one_json_event_per_line(http: httpx2.AsyncClient) -> None:
    session = (await http.post("/v1/sessions", json={"input": "hi", "params": {"tokens": 20}})).json()
    url, accept = f"/v1/sessions/{session['session_id']}/events", {"Accept": "application/x-ndjson"}
    async with http.stream("GET", url, headers=accept) as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) async for line in response.aiter_lines() if line]
    assert lines[-1]["event"] == "run.completed" and [line["id"] for line in lines] == list(range(1, len(lines) + 1))
    async with http.stream("GET", url, headers=accept, params={"last_event_id": "3"}) as response:
        assert [json.loads(line) async for line in response.aiter_lines() if line] == lines[3:]
    last = {"last_event_id": str(lines[-1]["id"])}
    async with http.stream("GET", url, headers=accept, params=last) as response:
        assert response.status_code == 204  # all of it was sent and nothing is coming: as for SSE


@pytest.fixture
async def secured(start_gateway: Callable[..., Any], worker: TokentailWorker) -> AsyncIterator[httpx2.AsyncClient]:
    gateway: Gateway = await start_gateway(
        api_keys=SecretStr(f"acme:{KEY_A},beta:{KEY_B}"), secret=SecretStr(SECRET), stream_token_ttl_seconds=60
    )
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=15) as client:
        yield client


async def test_a_chat_token_queues_and_stops_runs_in_its_chat_and_nothing_more(secured: httpx2.AsyncClient) -> None:
    http = secured
    made = await http.post("/v1/sessions", json={"chat_id": "chat-9", "token_scope": "chat"}, headers=bearer(KEY_A))
    assert made.status_code == 201 and made.json()["stream_token_scope"] == "chat"
    again = await http.post("/v1/sessions", json={"chat_id": "chat-9"}, headers=bearer(KEY_A))
    assert again.status_code == 200 and again.json()["session_id"] == made.json()["session_id"]
    exists = await http.post("/v1/sessions", json={"chat_id": "chat-9", "input": "x"}, headers=bearer(KEY_A))
    assert (exists.status_code, exists.json()["error"]["type"]) == (409, "session_exists")
    chat, read = made.json()["stream_token"], again.json()["stream_token"]
    session_id = made.json()["session_id"]

    async with http.stream("POST", "/v1/ai-sdk/chat", json=chat_body("chat-9"), headers=bearer(chat)) as response:
        assert response.status_code == 200
        assert types(await sse_frames(response))[-1] == "finish"
    for path, body in (("/v1/ai-sdk/chat", chat_body("chat-9")), ("/v1/ag-ui", agent_input("chat-9"))):
        refused = await http.post(path, json=body, headers=bearer(read))
        assert (refused.status_code, refused.json()["error"]["type"]) == (403, "forbidden"), path
        other = await http.post(path, json={**body, "id": "chat-10", "threadId": "chat-10"}, headers=bearer(chat))
        assert other.status_code == 403, path  # a chat token is for its own chat only
    assert (await http.post("/v1/ai-sdk/chat/chat-9/stop", headers=bearer(chat))).status_code == 202
    assert (await http.post("/v1/ag-ui/chat-9/stop", headers=bearer(read))).status_code == 403
    assert (
        await http.post(f"/v1/sessions/{session_id}/runs", json={"input": "x"}, headers=bearer(chat))
    ).status_code == 202
    assert (await http.delete(f"/v1/sessions/{session_id}", headers=bearer(chat))).status_code == 403
    # Refreshing keeps the scope; a read token cannot make itself a chat token.
    refreshed = await http.post(f"/v1/sessions/{session_id}/token", headers=bearer(chat))
    assert refreshed.json()["stream_token_scope"] == "chat"
    widened = await http.post(f"/v1/sessions/{session_id}/token", json={"scope": "chat"}, headers=bearer(read))
    assert widened.status_code == 403
    # Another tenant's chat of the same id is another session; a session id of acme's is not beta's to use.
    beta = await http.post("/v1/sessions", json={"chat_id": "chat-9"}, headers=bearer(KEY_B))
    assert beta.status_code == 201 and beta.json()["session_id"] != session_id
    foreign = await http.post("/v1/sessions", json={"chat_id": session_id}, headers=bearer(KEY_B))
    assert foreign.status_code == 404
    assert (await http.post("/v1/ai-sdk/chat", json=chat_body(session_id), headers=bearer(KEY_B))).status_code == 404


class ChatSocket:
    """The frames of `WebSocketChatTransport`'s protocol, over a real socket."""

    def __init__(self, socket: websockets.ClientConnection) -> None:
        self.socket = socket

    async def request(self, frame: dict[str, Any]) -> None:
        await self.socket.send(json.dumps({"headers": {}, "body": {}, **frame}))

    async def frames(self, request_id: str, until: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """This request's frames up to the one `until` accepts."""
        got: list[dict[str, Any]] = []
        while True:
            frame = json.loads(await asyncio.wait_for(self.socket.recv(), scaled(15)))
            if frame["requestId"] == request_id:
                got.append(frame)
                if until(frame):
                    return got


def ws_url(http: httpx2.AsyncClient) -> str:
    return str(http.base_url).replace("http://", "ws://").rstrip("/") + "/v1/ai-sdk/chat/ws"


async def test_ai_sdk_websocket_transport_sends_resumes_and_aborts_requests(
    http: httpx2.AsyncClient, gates: Gates
) -> None:
    await http.post("/v1/sessions", json={"chat_id": "chat-ws", **HELD})
    async with websockets.connect(ws_url(http)) as socket:
        chat = ChatSocket(socket)
        await chat.request({"type": "resume", "requestId": "q0", "id": "chat-ws"})
        assert await chat.frames("q0", lambda f: True) == [{"type": "no-active", "requestId": "q0"}]
        send = {"type": "send", "requestId": "q1", "trigger": "submit-message", **chat_body("chat-ws")}
        await chat.request(send)
        head = await chat.frames("q1", lambda f: f["type"] == "chunk" and f["chunk"]["type"] == "text-delta")
        held_at = head[-1]["sequence"]  # the run waits at its gate
        await chat.request({"type": "abort", "requestId": "q1"})  # stops the sending, not the run
        # A resume replays the answer from its start with the same numbers; lastSequence skips what is held.
        await chat.request({"type": "resume", "requestId": "q2", "id": "chat-ws"})
        gates.release(await active_run(http, "chat-ws"))
        whole = await chat.frames("q2", lambda f: f["type"] in ("end", "error"))
        await chat.request({"type": "resume", "requestId": "q3", "id": "chat-ws", "lastSequence": held_at})
        rest = await chat.frames("q3", lambda f: f["type"] in ("end", "error"))
    chunks = [frame for frame in whole if frame["type"] == "chunk"]
    assert whole[0]["type"] == "start" and whole[-1]["type"] == "end"
    assert [frame["sequence"] for frame in chunks] == list(range(len(chunks)))  # contiguous, as the SDK checks
    assert [frame["chunk"] for frame in head[1:]] == [frame["chunk"] for frame in chunks[: held_at + 1]]
    assert [frame["sequence"] for frame in rest if frame["type"] == "chunk"] == list(range(held_at + 1, len(chunks)))
    assert chunks[-1]["chunk"]["type"] == "finish"


async def test_ai_sdk_websocket_refuses_with_errors_the_transport_shows(secured: httpx2.AsyncClient) -> None:
    http = secured
    made = await http.post("/v1/sessions", json={"chat_id": "chat-wr"}, headers=bearer(KEY_A))
    read = made.json()["stream_token"]
    async with websockets.connect(ws_url(http) + f"?token={read}") as socket:
        chat = ChatSocket(socket)
        await chat.request({"type": "send", "requestId": "q1", "trigger": "submit-message", **chat_body("chat-wr")})
        [error] = await chat.frames("q1", lambda f: True)
        assert error["type"] == "error" and "chat token" in error["errorText"]
        await chat.request({"type": "resume", "requestId": "q2", "id": "other-chat"})
        [error] = await chat.frames("q2", lambda f: True)
        assert error["type"] == "error" and "another session" in error["errorText"]
    with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
        async with websockets.connect(ws_url(http)) as socket:
            await socket.recv()
            await socket.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


def followers(gateway: Gateway) -> int:
    """Feeds this gateway runs for its clients, all sessions together."""
    return sum(len(channel.subscriptions) for channel in gateway.app.state.hub._channels.values())


async def test_ai_sdk_websocket_bounds_requests_in_flight_and_stops_those_it_replaces(
    start_gateway: Callable[..., Any], worker: TokentailWorker
) -> None:
    # One socket took 20,000 requests, each a feed kept after close; a reused requestId left the
    # request it replaced running, unstoppable.
    gateway: Gateway = await start_gateway(max_chat_socket_requests=4)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=15) as http:
        await http.post("/v1/sessions", json={"chat_id": "chat-fl", "input": "go", "params": {"tokens": 100_000}})
        async with websockets.connect(ws_url(http)) as socket:
            chat = ChatSocket(socket)
            for _ in range(50):  # the same id again and again: each replaces the one before
                await chat.request({"type": "resume", "requestId": "again", "id": "chat-fl"})
            await eventually(lambda: followers(gateway) == 1)
            for i in range(3):
                await chat.request({"type": "resume", "requestId": f"q{i}", "id": "chat-fl"})
                await chat.frames(f"q{i}", lambda f: f["type"] == "chunk")
            await chat.request({"type": "resume", "requestId": "one-too-many", "id": "chat-fl"})
            [refused] = await chat.frames("one-too-many", lambda f: True)
            assert refused["type"] == "error" and refused["errorText"].startswith("too_many_requests: 4 requests")
            await chat.request({"type": "abort", "requestId": "q0"})  # frees its place
            await chat.request({"type": "resume", "requestId": "q4", "id": "chat-fl"})
            await chat.frames("q4", lambda f: f["type"] == "chunk")
            assert followers(gateway) == 4
        await eventually(lambda: followers(gateway) == 0)  # closing the socket ended every request


async def test_each_request_on_an_ai_sdk_socket_holds_a_stream_slot_of_its_tenant(
    start_gateway: Callable[..., Any], worker: TokentailWorker
) -> None:
    # One socket held one slot, and its requests (each a feed) none: 16 feeds per slot.
    gateway: Gateway = await start_gateway(max_streams_per_tenant=2)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=15) as http:
        await http.post("/v1/sessions", json={"chat_id": "chat-sl", "input": "go", "params": {"tokens": 100_000}})
        async with websockets.connect(ws_url(http)) as socket:  # the socket's slot: 1 of 2
            chat = ChatSocket(socket)
            await chat.request({"type": "resume", "requestId": "a", "id": "chat-sl"})
            await chat.frames("a", lambda f: f["type"] == "chunk")  # 2 of 2
            await chat.request({"type": "resume", "requestId": "b", "id": "chat-sl"})
            [refused] = await chat.frames("b", lambda f: True)  # after waiting for a slot (2 s)
            assert refused["type"] == "error" and "this tenant has 2 streams open" in refused["errorText"]
            await chat.request({"type": "abort", "requestId": "a"})  # gives its slot back
            await chat.request({"type": "resume", "requestId": "c", "id": "chat-sl"})
            await chat.frames("c", lambda f: f["type"] == "chunk")


async def test_a_chat_token_holds_its_bound_of_requests_across_its_sockets(
    start_gateway: Callable[..., Any], worker: TokentailWorker
) -> None:
    gateway: Gateway = await start_gateway(
        max_chat_socket_requests=2, api_keys=SecretStr(f"acme:{KEY_A}"), secret=SecretStr(SECRET)
    )
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=15, headers=bearer(KEY_A)) as http:
        body = {"chat_id": "chat-tk", "input": "go", "token_scope": "chat", "params": {"tokens": 100_000}}
        made = await http.post("/v1/sessions", json=body)
        token = made.json()["stream_token"]
        url = ws_url(http) + f"?token={token}"
        async with websockets.connect(url) as first, websockets.connect(url) as second:
            one, other = ChatSocket(first), ChatSocket(second)
            await one.request({"type": "resume", "requestId": "a", "id": "chat-tk"})
            await one.frames("a", lambda f: f["type"] == "chunk")
            await other.request({"type": "resume", "requestId": "b", "id": "chat-tk"})
            await other.frames("b", lambda f: f["type"] == "chunk")
            await other.request({"type": "resume", "requestId": "c", "id": "chat-tk"})
            [refused] = await other.frames("c", lambda f: True)
            assert refused["type"] == "error" and "too_many_requests" in refused["errorText"]
        async with websockets.connect(url) as again:  # given back when the sockets closed
            await eventually(lambda: followers(gateway) == 0)
            fresh = ChatSocket(again)
            for request_id in ("d", "e"):
                await fresh.request({"type": "resume", "requestId": request_id, "id": "chat-tk"})
                await fresh.frames(request_id, lambda f: f["type"] == "chunk")
