"""The Agent Client Protocol at /acp (gateway/protocols/acp/) judged by its official Python client,
`agent-client-protocol` (its Streamable HTTP and WebSocket transports), against real gateways on loopback,
a real worker and Redis: a prompt streamed whole, a permission asked and answered, a cancel and a client's
answer taken by another gateway, a session loaded on another gateway after its connection is gone, and a
tenant kept from another's session."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import httpx2
import pytest
from acp import connect_to_agent, text_block
from acp.exceptions import RequestError
from acp.http import create_http_stream
from acp.interfaces import Client
from acp.schema import (
    AllowedOutcome,
    ClientCapabilities,
    CreateTerminalResponse,
    FileSystemCapabilities,
    RequestPermissionResponse,
    TerminalOutputResponse,
    WaitForTerminalExitResponse,
)
from acp.ws import create_websocket_stream
from pydantic import SecretStr

from tests.fixtures.stack import Gateway
from tests.support.gates import Gates
from tests.support.waiting import eventually

pytestmark = pytest.mark.acp

KEY, OTHER_KEY = "acme-key-0123456789abcdef", "beta-key-0123456789abcdef"
AUTH = {"api_keys": SecretStr(f"acme:{KEY},beta:{OTHER_KEY}"), "secret": SecretStr("s" * 40)}
AGENTS = {
    "careful": "tests.agents.asking_agent:CAREFUL",
    "approval": "tests.agents.asking_agent:approval",
    "held": "tests.support.gates:held",
    "reads": "tests.agents.acp_agents:reads_a_file",
    "reads_or_gives_up": "tests.agents.acp_agents:reads_or_gives_up",
    "coder": "tests.agents.acp_agents:CODER",
    "writes": "tests.agents.acp_agents:writes_a_large_file",
}
QUESTION = "What is 6 * 7?"  # the scripted model calls the calculator, then answers


class Editor:
    """What an editor does with what the agent sends (the `Client` it connects with: only what the
    agents here ask of it): keeps every update, answers each permission with the option `choose` picks
    (the first, by default), serves its files and a terminal (each request kept in `served`) when it
    says so (`serves`: its `clientCapabilities`)."""

    def __init__(self, choose: Callable[[list[Any]], str] | None = None, serves: bool = True) -> None:
        self.updates: list[Any] = []
        self.asked: list[Any] = []
        self.read: list[str] = []
        self.served: list[str] = []
        self.written: dict[str, str] = {}
        self.capabilities = (
            ClientCapabilities(fs=FileSystemCapabilities(read_text_file=True, write_text_file=True), terminal=True)
            if serves
            else ClientCapabilities()
        )
        self._choose = choose or (lambda options: options[0].option_id)

    async def request_permission(self, session_id: str, tool_call: Any, options: list[Any], **kwargs: Any) -> Any:
        self.asked.append((tool_call, options))
        return RequestPermissionResponse(outcome=AllowedOutcome(outcome="selected", option_id=self._choose(options)))

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        self.updates.append(update)

    async def read_text_file(self, session_id: str, path: str, line: Any = None, limit: Any = None, **kw: Any) -> Any:
        self.read.append(path)
        return {"content": "x" * 300_000 if path == "/work/huge.txt" else f"hello from {path}"}

    async def write_text_file(self, session_id: str, path: str, content: str, **kwargs: Any) -> None:
        self.served.append("fs/write_text_file")
        self.written[path] = content

    async def create_terminal(self, session_id: str, command: str, args: Any = None, **kwargs: Any) -> Any:
        self.served.append(f"terminal/create {command}")
        return CreateTerminalResponse(terminal_id="term-1")

    async def wait_for_terminal_exit(self, session_id: str, terminal_id: str, **kwargs: Any) -> Any:
        self.served.append(f"terminal/wait_for_exit {terminal_id}")
        return WaitForTerminalExitResponse(exit_code=0)

    async def terminal_output(self, session_id: str, terminal_id: str, **kwargs: Any) -> Any:
        self.served.append(f"terminal/output {terminal_id}")
        return TerminalOutputResponse(output="3 passed", truncated=False)

    async def release_terminal(self, session_id: str, terminal_id: str, **kwargs: Any) -> None:
        self.served.append(f"terminal/release {terminal_id}")

    def said(self) -> str:
        return "".join(u.content.text for u in self.updates if u.session_update == "agent_message_chunk")

    def kinds(self) -> list[str]:
        return [update.session_update for update in self.updates]


@pytest.fixture
async def gateways(start_gateway: Callable[..., Any], start_worker: Callable[..., Any], gates: Gates) -> list[Gateway]:
    await start_worker(agents=AGENTS, **AUTH)
    return [await start_gateway(agents=AGENTS, **AUTH), await start_gateway(agents=AGENTS, **AUTH)]


@contextlib.asynccontextmanager
async def connected_to(url: str, editor: Editor, *, ws: bool = False, key: str | None = None) -> AsyncIterator[Any]:
    """The official client's connection to the ACP endpoint `url`, over HTTP or its WebSocket, initialized;
    closed as the client closes it, whatever happened."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if ws:
        transport: Any = await create_websocket_stream(url.replace("http://", "ws://"), headers=headers)
    else:
        transport = create_http_stream(url, headers=headers)
    connection = connect_to_agent(cast(Client, editor), transport)
    try:
        await asyncio.wait_for(connection.initialize(protocol_version=1, client_capabilities=editor.capabilities), 30)
        yield connection
    finally:
        with contextlib.suppress(Exception):
            await connection.close()
        with contextlib.suppress(Exception):
            await transport.close()


async def prompted(connection: Any, session_id: str, text: str) -> Any:
    """The answer to a `session/prompt` of `text`: its turn's end."""
    return await asyncio.wait_for(connection.prompt(session_id=session_id, prompt=[text_block(text)]), 60)


async def turns(gateway: Gateway, editor: Editor, agent: str, *texts: str) -> list[str]:
    """The stop reasons of `texts`, prompted one after the other in a new session of `agent` over a
    connection of `editor`'s to `gateway`."""
    async with connected(gateway, editor, agent=agent) as connection:
        session = await connection.new_session(cwd="/work", mcp_servers=[])
        return [(await prompted(connection, session.session_id, text)).stop_reason for text in texts]


def connected(gateway: Gateway, editor: Editor, *, ws: bool = False, key: str = KEY, agent: str = "") -> Any:
    """`connected_to` a gateway of the in-process stack, with `key`, `?agent=` if named."""
    return connected_to(f"{gateway.url}/acp" + (f"?agent={agent}" if agent else ""), editor, ws=ws, key=key)


@pytest.mark.parametrize("ws", [False, True], ids=["http", "websocket"])
async def test_a_prompt_streams_its_answer_and_tool_call_whole_and_ends_its_turn(
    gateways: list[Gateway], ws: bool
) -> None:
    editor = Editor()
    async with connected(gateways[0], editor, ws=ws) as connection:
        session = await connection.new_session(cwd="/work", mcp_servers=[])
        assert session.session_id.startswith("s_")
        done = await prompted(connection, session.session_id, QUESTION)
    assert done.stop_reason == "end_turn"
    async with _rest(gateways[1]) as rest:
        state = (await rest.get(f"/v1/sessions/{session.session_id}")).json()
    assert editor.said() == state["runs"][0]["output"]  # every chunk once, in order
    assert editor.kinds().count("tool_call") == 1 and "tool_call_update" in editor.kinds()
    finished = next(u for u in editor.updates if u.session_update == "tool_call_update")
    assert finished.status == "completed" and finished.content[0].content.text == "42"
    assert state["runs"][0]["input"] == QUESTION
    assert state["metadata"] == {"acp": {"cwd": "/work", "mcpServers": []}}


async def test_a_run_reads_a_file_through_the_connected_editor_and_fails_clearly_without_one(
    gateways: list[Gateway],
) -> None:
    editor = Editor()
    # A file past what an answer holds (an event's 256 KiB): the run hears so at once, not at its expiry.
    assert await turns(gateways[0], editor, "reads", "/work/a.py", "/work/huge.txt") == ["end_turn"] * 2
    assert editor.read == ["/work/a.py", "/work/huge.txt"]
    assert editor.said() == (
        "It says: hello from /work/a.py"
        "Could not read it: fs/read_text_file: its result could not be taken: "
        "the answer's event exceeds 262144 bytes of JSON"
    )

    # A large write: its content goes to the editor whole, once (the question's prompt shows a part);
    # one past what a request takes is refused in the run, which hears why.
    writer = Editor()
    assert await turns(gateways[0], writer, "writes", "/work/big.txt", "/work/huge.txt") == ["end_turn"] * 2
    assert list(writer.written) == ["/work/big.txt"] and len(writer.written["/work/big.txt"]) == 100_000
    assert writer.said() == (
        "Written.Not written: fs/write_text_file: its params are 200041 bytes of JSON, past 131072"
    )

    # An editor that did not say it serves files is not asked: the request expires, and the run hears why.
    unable = Editor(serves=False)
    assert await turns(gateways[1], unable, "reads_or_gives_up", "/work/b.py") == ["end_turn"]
    assert unable.read == []
    assert unable.said().startswith(
        "Could not read it: fs/read_text_file: no client served fs/read_text_file within 1 s"
    )


async def test_a_model_reads_writes_and_runs_a_command_through_the_editor_s_tools_each_request_once(
    gateways: list[Gateway],
) -> None:
    editor = Editor()
    prompts = ("Please read Notes", "Write down Notes", "Run the command Pytest")
    assert await turns(gateways[0], editor, "coder", *prompts) == ["end_turn"] * 3
    assert editor.read == ["Notes"] and editor.written == {"Notes": "Notes"}
    # The command's four requests, each a wait of the run with no worker held, each sent once.
    assert editor.served == [
        "fs/write_text_file",
        "terminal/create Pytest",
        "terminal/wait_for_exit term-1",
        "terminal/output term-1",
        "terminal/release term-1",
    ]
    said = editor.said()
    assert "hello from Notes" in said and "3 passed" in said
    assert editor.kinds().count("tool_call") == 3  # each call shown once, though its run went on four times
    ended = [u for u in editor.updates if u.session_update == "tool_call_update"]
    assert [u.status for u in ended] == ["completed"] * 3


async def test_a_permission_is_asked_of_the_editor_and_its_answer_goes_on(gateways: list[Gateway]) -> None:
    editor = Editor(choose=lambda options: next(o.option_id for o in options if o.kind == "reject_once"))
    async with connected(gateways[0], editor, agent="approval") as connection:
        session = await connection.new_session(cwd="/work", mcp_servers=[])
        done = await prompted(connection, session.session_id, "go")
    assert done.stop_reason == "end_turn"
    ((tool_call, options),) = editor.asked
    assert tool_call.title == "Delete 3 files?" and {o.kind for o in options} == {"allow_once", "reject_once"}
    assert editor.said() == "Checking. Done: kept."  # rejected: the tool kept the files


async def test_a_permission_open_when_its_editor_left_is_asked_again_on_load_and_answered(
    gateways: list[Gateway],
) -> None:
    asked = asyncio.Event()

    class Away(Editor):
        async def request_permission(self, session_id: str, tool_call: Any, options: list[Any], **kwargs: Any) -> Any:
            asked.set()
            await asyncio.Event().wait()  # the editor never answers: it goes away

    async with connected(gateways[0], Away(), agent="approval") as connection:
        session = await connection.new_session(cwd="/work", mcp_servers=[])
        turn = asyncio.create_task(connection.prompt(session_id=session.session_id, prompt=[text_block("go")]))
        await asyncio.wait_for(asked.wait(), 60)
    turn.cancel()

    back = Editor()  # allows
    async with connected(gateways[1], back) as connection, _rest(gateways[1]) as rest:
        await connection.load_session(cwd="/work", session_id=session.session_id, mcp_servers=[])
        await eventually(lambda: len(back.asked) == 1, what="the open question asked again")

        async def completed() -> str:
            state = (await rest.get(f"/v1/sessions/{session.session_id}")).json()
            assert state["status"] == "idle", state["status"]
            return str(state["runs"][0]["output"])

        assert await eventually(completed, what="the run's end") == "Checking. Done: deleted."
        await eventually(lambda: back.said() == "Checking. Done: deleted.", what="the answer, once")


async def test_a_prompt_while_a_turn_is_going_steers_it_where_chats_steer_and_both_end_with_it(
    start_gateway: Callable[..., Any], start_worker: Callable[..., Any], gates: Gates
) -> None:
    await start_worker(agents=AGENTS, **AUTH)
    gateway = await start_gateway(agents=AGENTS, chat_while_running="steer", **AUTH)
    async with connected(gateway, Editor(), agent="held") as connection, _rest(gateway) as rest:
        session = await connection.new_session(cwd="/work", mcp_servers=[])
        first = asyncio.create_task(connection.prompt(session_id=session.session_id, prompt=[text_block("hold")]))
        run_id = await eventually(lambda: _active_run(rest, session.session_id), what="the prompt's run")
        await eventually(lambda: gates.reached(run_id) == [1], what="the run at its gate")
        second = asyncio.create_task(connection.prompt(session_id=session.session_id, prompt=[text_block("and")]))

        async def steered() -> bool:
            events = await gateway.app.state.store.read(session.session_id, 0, 1000)
            return any(event.type == b"steer.accepted" for event in events)

        await eventually(steered, what="the second prompt taken as a steer of the run going")
        gates.release(run_id)
        done = await asyncio.wait_for(asyncio.gather(first, second), 60)
        assert len((await rest.get(f"/v1/sessions/{session.session_id}")).json()["runs"]) == 1  # no run of its own
    assert [answer.stop_reason for answer in done] == ["end_turn", "end_turn"]


async def test_a_session_made_to_reject_refuses_a_prompt_while_its_turn_is_going(
    gateways: list[Gateway], gates: Gates
) -> None:
    async with connected(gateways[0], Editor(), agent="held") as connection, _rest(gateways[0]) as rest:
        with pytest.raises(RequestError):  # (the SDK sends its extra arguments as `_meta`)
            await connection.new_session(cwd="/work", mcp_servers=[], multitask="sometimes")
        session = await connection.new_session(cwd="/work", mcp_servers=[], multitask="reject")
        first = asyncio.create_task(connection.prompt(session_id=session.session_id, prompt=[text_block("hold")]))
        run_id = await eventually(lambda: _active_run(rest, session.session_id), what="the prompt's run")
        await eventually(lambda: gates.reached(run_id) == [1], what="the run at its gate")
        with pytest.raises(RequestError, match="active run"):
            await prompted(connection, session.session_id, "and")
        gates.release(run_id)
        assert (await asyncio.wait_for(first, 60)).stop_reason == "end_turn"
        state = (await rest.get(f"/v1/sessions/{session.session_id}")).json()
    assert len(state["runs"]) == 1 and state["metadata"]["acp"]["multitask"] == "reject"


async def test_a_cancel_posted_to_another_gateway_ends_the_turn_cancelled(
    gateways: list[Gateway], gates: Gates
) -> None:
    editor = Editor()
    async with connected(gateways[0], editor, agent="held") as connection:
        session = await connection.new_session(cwd="/work", mcp_servers=[])
        turn = asyncio.create_task(connection.prompt(session_id=session.session_id, prompt=[text_block("hold")]))
        async with _rest(gateways[0]) as rest, _rest(gateways[1]) as other:
            run_id = await eventually(lambda: _active_run(rest, session.session_id), what="the prompt's run")
            await eventually(lambda: gates.reached(run_id) == [1], what="the run at its gate")
            # The same connection's notification, taken by the other gateway (its id is all it needs).
            connection_id = await _connection_id(gateways[0], session.session_id)
            cancel = {"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": session.session_id}}
            posted = await other.post("/acp", json=cancel, headers={"Acp-Connection-Id": connection_id})
            assert posted.status_code == 202
        assert (await asyncio.wait_for(turn, 60)).stop_reason == "cancelled"


async def test_a_session_loads_on_another_gateway_with_its_history_once_and_not_across_tenants(
    gateways: list[Gateway],
) -> None:
    first = Editor()
    async with connected(gateways[0], first) as connection:
        session = await connection.new_session(cwd="/work", mcp_servers=[])
        await prompted(connection, session.session_id, QUESTION)
    answer = first.said()

    again = Editor()
    async with connected(gateways[1], again, ws=True) as connection:
        await connection.load_session(cwd="/work", session_id=session.session_id, mcp_servers=[])
        await eventually(lambda: again.said() == answer, what="the history replayed")
        said = [u.content.text for u in again.updates if u.session_update == "user_message_chunk"]
        assert said == [QUESTION]
        assert again.kinds().count("tool_call") == 1
        # Then the session goes on here: a follow-up streams after the history, nothing of it twice.
        done = await prompted(connection, session.session_id, "and 2 * 3?")
        assert done.stop_reason == "end_turn"
        assert again.said().startswith(answer) and len(again.said()) > len(answer)

    async with connected(gateways[1], Editor(), key=OTHER_KEY) as theirs:
        with pytest.raises(RequestError):
            await theirs.load_session(cwd="/work", session_id=session.session_id, mcp_servers=[])

    # A stream token reads as every route lets it: a read token loads, a chat token also prompts.
    async with _rest(gateways[0]) as rest:
        tokens = [
            (await rest.post(f"/v1/sessions/{session.session_id}/token", json={"scope": scope})).json()["stream_token"]
            for scope in ("read", "chat")
        ]
    async with connected(gateways[0], reader := Editor(), key=tokens[0]) as connection:
        await connection.load_session(cwd="/work", session_id=session.session_id, mcp_servers=[])
        await eventually(lambda: reader.said().startswith(answer), what="the history, read with a read token")
        with pytest.raises(RequestError):
            await connection.prompt(session_id=session.session_id, prompt=[text_block("and 1 + 1?")])
        with pytest.raises(RequestError):
            await connection.new_session(cwd="/work", mcp_servers=[])
    async with connected(gateways[0], Editor(), key=tokens[1]) as connection:
        await connection.load_session(cwd="/work", session_id=session.session_id, mcp_servers=[])
        done = await prompted(connection, session.session_id, "and 1 + 1?")
        assert done.stop_reason == "end_turn"


async def test_open_connections_hold_no_redis_connection_and_each_still_prompts(
    start_gateway: Callable[..., Any], start_worker: Callable[..., Any]
) -> None:
    # A gateway of its default 8 Redis connections (4 for REST calls) serves many editors' streams (two
    # each, 16 in all), each waiting without a Redis connection of its own.
    await start_worker(agents=AGENTS, **AUTH)
    gateway = await start_gateway(agents=AGENTS, gateway_redis_connections=8, **AUTH)
    editors = [Editor() for _ in range(8)]
    async with contextlib.AsyncExitStack() as opened:
        connections = [await opened.enter_async_context(connected(gateway, editor)) for editor in editors]
        sessions = [await connection.new_session(cwd="/work", mcp_servers=[]) for connection in connections]
        async with _rest(gateway) as rest:  # its REST calls are answered meanwhile
            assert (await rest.get(f"/v1/sessions/{sessions[0].session_id}")).status_code == 200
        prompts = [
            connection.prompt(session_id=session.session_id, prompt=[text_block(QUESTION)])
            for connection, session in zip(connections, sessions, strict=True)
        ]
        done = await asyncio.wait_for(asyncio.gather(*prompts), 90)
    assert {answer.stop_reason for answer in done} == {"end_turn"}
    assert len({editor.said() for editor in editors}) == 1 and editors[0].said()


async def test_a_stream_the_client_left_gives_its_slot_back(start_gateway: Callable[..., Any]) -> None:
    gateway = await start_gateway(max_streams_per_tenant=1, **AUTH)
    async with _rest(gateway) as rest:
        initialize = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": 1}}
        made = await rest.post("/acp", json=initialize)
        headers = {"Acp-Connection-Id": made.headers["Acp-Connection-Id"], "Accept": "text/event-stream"}

        async def opened() -> int:
            async with rest.stream("GET", "/acp", headers=headers) as stream:
                if stream.status_code == 200:
                    chunks = stream.aiter_bytes()  # (kept: a generator let go of closes the stream)
                    assert await anext(chunks) == b": open\n\n"
                    refused = await rest.get("/acp", headers=headers)  # the tenant's one slot is taken
                    assert refused.status_code == 429, refused.text
                return stream.status_code  # and the client leaves

        async def opened_again() -> bool:
            return await opened() == 200

        assert await opened() == 200
        # Its slot is given back as the gateway sees the client gone: the stream opens again, and again.
        await eventually(opened_again, what="the stream opened again")
        assert await opened_again()


def _rest(gateway: Gateway) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)


async def _active_run(rest: httpx2.AsyncClient, session_id: str) -> str:
    active = (await rest.get(f"/v1/sessions/{session_id}")).json()["active_run_id"]
    assert active, "no run yet"
    return str(active)


async def _connection_id(gateway: Gateway, session_id: str) -> str:
    """The id of the one ACP connection that shows `session_id` (as its client learned it)."""
    store = gateway.app.state.store
    for key in await store.redis.keys(f"{store.keys.prefix}:{{acp:*}}:conn"):
        if await store.redis.hexists(key, f"s:{session_id}"):
            return str(key.decode().split("{acp:")[1].split("}")[0])
    raise AssertionError(f"no connection shows {session_id}")
