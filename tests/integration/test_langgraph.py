"""LangGraph's Python client (`langgraph-sdk`, pinned) against tokentail's Agent Server API v1 routes
(gateway/protocols/langgraph), on a real gateway, worker and Redis: as its users write it,
`get_client(url=".../langgraph")` and nothing more (docs/langgraph.md). The built-in agents with the
offline model, and a user's function agents (tests/agents, tests/support/gates.py)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError
from langgraph_sdk.schema import Command
from pydantic import SecretStr

from tests.fixtures.stack import Gateway
from tests.support.gates import Gates
from tests.support.waiting import eventually, scaled
from tokentail.shared.plumbing.settings import Settings
from tokentail.worker.process.main import TokentailWorker
from tokentail.worker.providers.scripted import DEFAULT_TOKENS, scripted_tokens

pytestmark = pytest.mark.langgraph

INPUT = "Tell me about resumable streams."
ANSWER = "".join(scripted_tokens(INPUT, DEFAULT_TOKENS))
MODES = ["values", "messages-tuple", "updates"]
KEY_A = "acme-key-0123456789abcdef"
KEY_B = "beta-key-0123456789abcdef"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every gateway and worker here knows these users' function agents."""
    agents = {
        "held": "tests.support.gates:held",  # the scripted answer, held at its gate halfway
        "arithmetic": "tests.agents.arithmetic_agent:arithmetic",  # its answer shows the conversation it was given
        "approval": "tests.agents.asking_agent:approval",  # asks before its tool call
        "parallel_approvals": "tests.agents.asking_agent:parallel_approvals",  # two questions at once
        "failing": "tests.agents.spawning_agents:failing",  # raises
        "approve": "tests.agents.asking_agent:approval",
        "asking_parent": "tests.agents.spawning_agents:asks_a_child",  # its child (`approve`) asks
        "counting": "tests.agents.counting_agents:COUNTING",  # the scripted loop; its calculator counts its runs
    }
    return settings.model_copy(update={"agents": agents})


@pytest.fixture
async def client(gateway: Gateway, worker: TokentailWorker) -> AsyncIterator[Any]:
    async with get_client(url=f"{gateway.url}/langgraph") as client:
        yield client


def said(text: str) -> dict[str, Any]:
    return {"messages": [{"type": "human", "content": text}]}


def streamed_text(parts: list[Any]) -> str:
    """The AI text the `messages` parts carried, chunk by chunk, as a UI appends them."""
    return "".join(
        chunk["content"]
        for part in parts
        if part.event == "messages"
        for chunk, _metadata in [part.data]
        if chunk.get("type") == "AIMessageChunk" and isinstance(chunk.get("content"), str)
    )


def last_values(parts: list[Any]) -> dict[str, Any]:
    values: dict[str, Any] = [part.data for part in parts if part.event == "values"][-1]
    return values


def kinds(messages: list[dict[str, Any]]) -> list[str]:
    return [message["type"] for message in messages]


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [part async for part in stream]


async def test_a_run_streams_values_messages_and_updates_and_the_thread_keeps_it(client: Any) -> None:
    thread = await client.threads.create(metadata={"user": "ada"})
    tid = thread["thread_id"]
    assert thread["status"] == "idle" and thread["metadata"] == {"user": "ada"}
    created: list[Any] = []
    parts = await collect(
        client.runs.stream(tid, "assistant", input=said(INPUT), stream_mode=MODES, on_run_created=created.append)
    )
    assert parts[0].event == "metadata"
    run_id = parts[0].data["run_id"]
    assert created == [{"run_id": run_id, "thread_id": tid}]  # parsed from Content-Location
    assert streamed_text(parts) == ANSWER  # whole, and once
    final = last_values(parts)["messages"]
    assert kinds(final) == ["human", "ai"] and final[1]["content"] == ANSWER
    chunk_ids = {part.data[0]["id"] for part in parts if part.event == "messages"}
    assert chunk_ids == {final[1]["id"]}  # the chunks merge into the message the values hold
    assert [part.data for part in parts if part.event == "updates"] == [{"agent": {"messages": [final[1]]}}]
    assert len({part.id for part in parts}) == len(parts)  # every frame its own id
    state = await client.threads.get_state(tid)
    assert state["values"]["messages"] == final and state["next"] == [] and state["interrupts"] == []
    assert (await client.runs.get(tid, run_id))["status"] == "success"
    assert (await client.threads.get(tid))["status"] == "idle"
    # The next run of the thread follows it: its values hold both turns.
    again = await client.runs.wait(tid, "assistant", input="And again?")
    assert kinds(again["messages"]) == ["human", "ai", "human", "ai"]
    assert [run["run_id"] for run in await client.runs.list(tid)][1] == run_id  # newest first
    history = await client.threads.get_history(tid)
    # Its checkpoints: each run's end and its input taken in, and the thread before its first run.
    assert [len(state["values"]["messages"]) for state in history] == [4, 3, 2, 1, 0]


async def test_assistants_are_the_catalog_agents_and_a_run_may_name_either(client: Any) -> None:
    found = await client.assistants.search(graph_id="assistant")
    [assistant] = found
    assert (await client.assistants.get(assistant["assistant_id"]))["graph_id"] == "assistant"
    assert (await client.assistants.get("team"))["graph_id"] == "team"
    assert "messages" in (await client.assistants.get_schemas("assistant"))["state_schema"]["properties"]
    assert (await client.assistants.get_graph("assistant"))["nodes"]
    with pytest.raises(NotFoundError):
        await client.assistants.get("nobody")
    values = await client.runs.wait(None, assistant["assistant_id"], input="Hello there")  # threadless
    assert kinds(values["messages"]) == ["human", "ai"]


async def test_a_join_from_any_frame_gets_what_followed_it_once(client: Any) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    modes = [*MODES, "custom", "messages", "events"]
    parts = await collect(client.runs.stream(tid, "assistant", input=said(INPUT), stream_mode=modes))
    run_id = parts[0].data["run_id"]
    # From the start (`-1`, what useStream sends): the same frames, with the same ids.
    again = await collect(client.runs.join_stream(tid, run_id, stream_mode=modes, last_event_id="-1"))
    assert [(part.event, part.id, part.data) for part in again] == [(p.event, p.id, p.data) for p in parts]
    # After any frame, an event's last or one inside an event (`<seq>.<k>`): the rest, no gap, no duplicate.
    inside = next(index for index, part in enumerate(parts) if part.id is not None and "." in part.id)
    for index in (1, inside, len(parts) // 2, len(parts) - 2):
        rest = await collect(client.runs.join_stream(tid, run_id, stream_mode=modes, last_event_id=parts[index].id))
        assert [(part.event, part.data) for part in rest] == [(p.event, p.data) for p in parts[index + 1 :]]


async def test_the_thread_join_streams_its_runs_from_the_start(client: Any) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    await client.runs.wait(tid, "assistant", input="first")
    await client.runs.wait(tid, "assistant", input="second")
    parts = await collect(await client.threads.join_stream(tid, last_event_id="-"))
    assert [part.event for part in parts].count("metadata") == 2
    assert kinds(last_values(parts)["messages"]) == ["human", "ai", "human", "ai"]
    assert await collect(await client.threads.join_stream(tid)) == []  # idle: nothing to wait for


async def test_the_thread_join_follows_the_active_run_from_its_start(client: Any, gates: Gates) -> None:
    tid = (await client.threads.create())["thread_id"]
    run_id = await _held_run(client, gates, tid, INPUT)
    parts: list[Any] = []

    async def join() -> None:
        async for part in await client.threads.join_stream(tid, stream_mode="messages-tuple"):
            parts.append(part)

    joined = asyncio.ensure_future(join())
    await eventually(lambda: streamed_text(parts), within=scaled(20))  # the run's first half, replayed
    gates.release(run_id)
    await asyncio.wait_for(joined, scaled(30))
    assert parts[0].event == "metadata" and parts[0].data["run_id"] == run_id
    assert streamed_text(parts) == ANSWER


async def test_an_unknown_or_refused_mode_is_a_422_naming_those_served(client: Any) -> None:
    thread = await client.threads.create()
    for mode in ("debug", "nonsense"):
        with pytest.raises(UnprocessableEntityError, match="messages-tuple"):
            await collect(client.runs.stream(thread["thread_id"], "assistant", input="hi", stream_mode=mode))
    assert (await client.threads.get(thread["thread_id"]))["status"] == "idle"  # nothing was started


async def test_threads_are_made_once_found_by_id_and_deleted(client: Any) -> None:
    made = await client.threads.create(thread_id="my-thread-1")
    assert made["thread_id"] == "my-thread-1"
    with pytest.raises(ConflictError):
        await client.threads.create(thread_id="my-thread-1")
    assert (await client.threads.create(thread_id="my-thread-1", if_exists="do_nothing"))["thread_id"] == "my-thread-1"
    assert [t["thread_id"] for t in await client.threads.search(ids=["my-thread-1", "never"])] == ["my-thread-1"]
    with pytest.raises(httpx.HTTPStatusError, match="404"):  # (`runs.wait` raises httpx's own errors)
        await client.runs.wait("never-made", "assistant", input="hi")  # if_not_exists: reject, as LangGraph's
    values = await client.runs.wait("made-by-run", "assistant", input="hi", if_not_exists="create")
    assert kinds(values["messages"]) == ["human", "ai"]
    await client.threads.delete("my-thread-1")
    with pytest.raises(NotFoundError):
        await client.threads.get("my-thread-1")


async def _held_run(client: Any, gates: Gates, tid: str, text: str) -> str:
    """A run of the thread, held at its gate (tests/support/gates.py)."""
    run = await client.runs.create(tid, "held", input=text)
    await eventually(lambda: gates.reached(run["run_id"]), within=scaled(20))
    return str(run["run_id"])


async def test_multitask_reject_and_enqueue(client: Any, gates: Gates) -> None:
    tid = (await client.threads.create())["thread_id"]
    first = await _held_run(client, gates, tid, INPUT)
    with pytest.raises(ConflictError):
        await client.runs.create(tid, "assistant", input="too soon")  # reject: LangGraph's default
    assert (await client.threads.get(tid))["status"] == "busy"
    queued = await client.runs.create(tid, "assistant", input="after it", multitask_strategy="enqueue")
    assert queued["status"] == "pending"
    gates.release(first)
    values = await client.runs.join(tid, queued["run_id"])
    assert kinds(values["messages"]) == ["human", "ai", "human", "ai"]
    assert values["messages"][1]["content"] == ANSWER
    assert [run["status"] for run in await client.runs.list(tid)] == ["success", "success"]


async def test_a_run_streamed_behind_another_shows_the_thread_with_both(client: Any, gates: Gates) -> None:
    tid = (await client.threads.create())["thread_id"]
    first = await _held_run(client, gates, tid, INPUT)
    streaming = asyncio.ensure_future(
        collect(client.runs.stream(tid, "assistant", input="next", stream_mode=MODES, multitask_strategy="enqueue"))
    )

    async def queued() -> bool:
        return len(await client.runs.list(tid)) == 2

    await eventually(queued, within=scaled(20))  # its stream opened while the first runs
    gates.release(first)
    parts = await asyncio.wait_for(streaming, scaled(30))
    messages = last_values(parts)["messages"]
    assert kinds(messages) == ["human", "ai", "human", "ai"] and messages[1]["content"] == ANSWER
    assert streamed_text(parts) == messages[3]["content"]  # only its own run's text


async def test_a_failed_run_ends_its_stream_with_an_error_and_wait_raises_it(client: Any) -> None:
    tid = (await client.threads.create())["thread_id"]
    parts = await collect(client.runs.stream(tid, "failing", input="go", stream_mode=MODES))
    assert parts[-1].event == "error" and parts[-1].data["error"] == "internal_error"
    assert (await client.threads.get(tid))["status"] == "error"
    with pytest.raises(Exception, match="RuntimeError"):
        await client.runs.wait(tid, "failing", input="again")


async def test_multitask_interrupt_keeps_the_cut_run_and_rollback_leaves_no_trace_of_it(
    client: Any, gates: Gates
) -> None:
    for strategy in ("interrupt", "rollback"):
        tid = (await client.threads.create())["thread_id"]
        await client.runs.wait(tid, "arithmetic", input="What is 2 + 3?")
        cut = await client.runs.create(tid, "arithmetic", input="and times ten? (hold)")
        cut_id: str = cut["run_id"]
        await eventually(lambda: gates.reached(cut_id), within=scaled(20))  # noqa: B023 (awaited here)
        values = await client.runs.wait(tid, "arithmetic", input="and plus 4?", multitask_strategy=strategy)
        assert values["messages"][-1]["content"] == "9"  # the agent was not given the cut turn
        texts = [message["content"] for message in (await client.threads.get_state(tid))["values"]["messages"]]
        if strategy == "interrupt":
            assert texts == ["What is 2 + 3?", "5", "and times ten? (hold)", "and plus 4?", "9"]
            assert (await client.runs.get(tid, cut_id))["status"] == "interrupted"
        else:
            assert texts == ["What is 2 + 3?", "5", "and plus 4?", "9"]
            assert cut_id not in [run["run_id"] for run in await client.runs.list(tid)]
            with pytest.raises(NotFoundError):
                await client.runs.get(tid, cut_id)
            joined = await collect(await client.threads.join_stream(tid, last_event_id="-"))
            assert cut_id not in [part.data["run_id"] for part in joined if part.event == "metadata"]
            assert [m["content"] for m in last_values(joined)["messages"]] == texts


async def test_cancel_interrupts_or_rolls_back_a_run(client: Any, gates: Gates) -> None:
    tid = (await client.threads.create())["thread_id"]
    run_id = await _held_run(client, gates, tid, INPUT)
    await client.runs.cancel(tid, run_id, wait=True, action="rollback")
    assert (await client.threads.get_state(tid))["values"]["messages"] == []
    run_id = await _held_run(client, gates, tid, INPUT)
    await client.runs.cancel(tid, run_id, wait=True)
    assert (await client.runs.get(tid, run_id))["status"] == "interrupted"
    assert kinds((await client.threads.get_state(tid))["values"]["messages"]) == ["human", "ai"]  # what it said


async def test_a_question_ends_the_stream_as_an_interrupt_and_a_command_resumes_it(client: Any) -> None:
    tid = (await client.threads.create())["thread_id"]
    parts = await collect(client.runs.stream(tid, "approval", input="Clean up", stream_mode=MODES))
    run_id = parts[0].data["run_id"]
    [interrupt] = last_values(parts)["__interrupt__"]
    assert interrupt["value"]["prompt"] == "Delete 3 files?" and interrupt["value"]["kind"] == "approval"
    assert [part.data for part in parts if part.event == "updates"][-1] == {"__interrupt__": [interrupt]}
    assert (await client.runs.get(tid, run_id))["status"] == "success"  # as LangGraph's: the run stopped there
    thread = await client.threads.get(tid)
    assert thread["status"] == "interrupted" and thread["interrupts"] == {run_id: [interrupt]}
    state = await client.threads.get_state(tid)
    assert state["interrupts"] == [interrupt] and state["tasks"][0]["interrupts"] == [interrupt]
    resumed = await collect(
        client.runs.stream(tid, "approval", command=Command(resume={"approved": True}), stream_mode=MODES)
    )
    assert resumed[0].data["run_id"] == run_id  # the same run goes on
    assert streamed_text(resumed) == "Done: deleted."
    messages = last_values(resumed)["messages"]
    assert kinds(messages) == ["human", "ai", "tool", "ai"]
    assert messages[1]["content"] == "Checking. " and messages[1]["tool_calls"][0]["name"] == "delete_files"
    assert messages[2]["tool_call_id"] == messages[1]["tool_calls"][0]["id"] and messages[2]["content"] == "deleted"
    assert (await client.threads.get_state(tid))["values"]["messages"] == messages
    assert (await client.threads.get(tid))["status"] == "idle"
    tools = await collect(client.runs.join_stream(tid, run_id, stream_mode="tools", last_event_id="-1"))
    assert [(part.data["event"], part.data["name"]) for part in tools if part.event == "tools"] == [
        ("on_tool_start", "delete_files"),
        ("on_tool_end", "delete_files"),
    ]


async def test_several_questions_are_several_interrupts_answered_by_id(client: Any) -> None:
    tid = (await client.threads.create())["thread_id"]
    values = await client.runs.wait(tid, "parallel_approvals", input="Clean up")
    interrupts = values["__interrupt__"]
    assert sorted(i["value"]["prompt"] for i in interrupts) == ["Delete cache?", "Delete logs?"]
    with pytest.raises(httpx.HTTPStatusError, match="422"):  # two open: name each
        await client.runs.wait(tid, "parallel_approvals", command=Command(resume={"approved": True}))
    answers = {i["id"]: {"approved": i["value"]["prompt"] == "Delete logs?"} for i in interrupts}
    values = await client.runs.wait(tid, "parallel_approvals", command=Command(resume=answers))
    assert values["messages"][-1]["content"] == "logs deleted, cache kept."


@pytest.mark.parametrize("subgraphs", [False, True], ids=["alone", "with-subgraphs"])
async def test_a_childs_question_is_the_runs_interrupt(client: Any, subgraphs: bool) -> None:
    tid = (await client.threads.create())["thread_id"]
    parts = await collect(
        client.runs.stream(tid, "asking_parent", input="go", stream_mode=MODES, stream_subgraphs=subgraphs)
    )
    [interrupt] = last_values(parts)["__interrupt__"]
    assert interrupt["value"]["prompt"] == "Delete 3 files?"
    assert (await client.threads.get(tid))["status"] == "interrupted"
    assert (await client.threads.get_state(tid))["interrupts"] == [interrupt]
    values = await client.runs.wait(tid, "asking_parent", command=Command(resume={"approved": True}))
    assert values["messages"][-1]["content"] == "The child said: Checking. Done: deleted."


async def test_a_childs_events_stream_under_its_namespace_with_stream_subgraphs(client: Any) -> None:
    tid = (await client.threads.create())["thread_id"]
    text = "Ask the assistant what is 12 * 7"
    parts = await collect(
        client.runs.stream(tid, "team", input=text, stream_mode=["values", "messages-tuple"], stream_subgraphs=True)
    )
    spaces = {part.event.split("|", 1)[1] for part in parts if "|" in part.event}
    [space] = spaces
    assert space.startswith("assistant:r_")
    child = [part for part in parts if part.event == f"messages|{space}"]
    assert "84" in "".join(chunk["content"] for chunk, _ in (part.data for part in child))
    assert kinds(last_values(parts)["messages"])[0] == "human"
    plain = await collect(client.runs.join_stream(tid, parts[0].data["run_id"], stream_mode=["values"]))
    assert all("|" not in part.event for part in plain)  # without it, the parent's tool call shows the child


class CuttingProxy:
    """A TCP proxy in front of the gateway whose open connections a test cuts (as a network drop or
    a proxy's timeout does): the client's next connection goes through again."""

    def __init__(self, port: int) -> None:
        self.port, self.url = port, ""
        self._pipes: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> "CuttingProxy":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._pipes += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        for writer in self._pipes:
            writer.transport.abort()
        self._pipes.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def proxy(gateway: Gateway) -> AsyncIterator[CuttingProxy]:
    proxy = await CuttingProxy(gateway.port).start()
    yield proxy
    await proxy.close()


async def test_a_cut_stream_is_resumed_by_the_sdk_itself_through_location(
    proxy: CuttingProxy, worker: TokentailWorker, gates: Gates
) -> None:
    async with get_client(url=f"{proxy.url}/langgraph") as client:
        await _cut_and_resumed(client, proxy, gates)


async def _cut_and_resumed(client: Any, proxy: CuttingProxy, gates: Gates) -> None:
    tid = (await client.threads.create())["thread_id"]
    parts: list[Any] = []

    async def stream() -> None:
        async for part in client.runs.stream(
            tid, "held", input=said(INPUT), stream_mode=MODES, stream_resumable=True, on_disconnect="continue"
        ):
            parts.append(part)

    streaming = asyncio.create_task(stream())
    await eventually(lambda: streamed_text(parts), within=scaled(20))
    run_id = parts[0].data["run_id"]
    await eventually(lambda: gates.reached(run_id), within=scaled(20))
    proxy.cut()  # mid-answer, under the SDK's open stream: it reconnects to `Location` with Last-Event-ID
    gates.release(run_id)
    await asyncio.wait_for(streaming, scaled(30))
    assert streamed_text(parts) == ANSWER  # every chunk, once
    assert last_values(parts)["messages"][-1]["content"] == ANSWER
    assert [part.event for part in parts].count("metadata") == 1


async def test_on_disconnect_cancel_cancels_the_run_when_its_client_leaves(client: Any, gates: Gates) -> None:
    tid = (await client.threads.create())["thread_id"]
    stream = client.runs.stream(tid, "held", input=said(INPUT), stream_mode="messages-tuple", on_disconnect="cancel")
    first = await anext(stream)
    run_id = first.data["run_id"]
    await eventually(lambda: gates.reached(run_id), within=scaled(20))
    await stream.aclose()  # the client leaves mid-run

    async def cancelled() -> bool:
        return bool((await client.runs.get(tid, run_id))["status"] == "interrupted")

    await eventually(cancelled, within=scaled(20))


@pytest.fixture
async def secured(start_gateway: Callable[..., Any], worker: TokentailWorker) -> Gateway:
    gateway: Gateway = await start_gateway(api_keys=SecretStr(f"acme:{KEY_A},beta:{KEY_B}"), secret=SecretStr("s" * 40))
    return gateway


async def test_a_browsers_chat_token_uses_its_thread_and_no_other(secured: Gateway) -> None:
    async with httpx.AsyncClient(base_url=secured.url, headers={"Authorization": f"Bearer {KEY_A}"}) as http:
        made = await http.post("/v1/sessions", json={"chat_id": "browser-thread", "token_scope": "chat"})
    async with get_client(url=f"{secured.url}/langgraph", api_key=made.json()["stream_token"]) as browser:
        values: Any = await browser.runs.wait("browser-thread", "assistant", input=said("hi"))
        assert kinds(values["messages"]) == ["human", "ai"]
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await browser.threads.get("another-thread")
    assert refused.value.response.status_code == 403


async def test_another_tenants_thread_is_not_found(secured: Gateway) -> None:
    url = f"{secured.url}/langgraph"
    async with (
        get_client(url=url, api_key=KEY_A) as acme,  # sent as `x-api-key`
        get_client(url=url, headers={"Authorization": f"Bearer {KEY_B}"}) as beta,
        get_client(url=url) as anonymous,
    ):
        await acme.threads.create(thread_id="shared-name")
        await acme.runs.wait("shared-name", "assistant", input=said("hi"))
        for call in (beta.threads.get, beta.threads.get_state):
            with pytest.raises(NotFoundError):
                await call("shared-name")
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await anonymous.threads.create()
    assert refused.value.response.status_code == 401


async def test_a_run_created_from_a_checkpoint_branches_the_thread_which_its_state_and_history_follow(
    client: Any,
) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    await client.runs.wait(tid, "arithmetic", input="What is 2 + 3?")
    await client.runs.wait(tid, "arithmetic", input="and times ten?")
    history = await client.threads.get_history(tid)
    # Now (the second run's end), its input taken in, the first run's end, its input, the empty thread.
    assert [len(state["values"]["messages"]) for state in history] == [4, 3, 2, 1, 0]
    first_turn = history[2]["checkpoint"]  # after the first run: where useStream's edit of the second goes from
    assert history[1]["parent_checkpoint"] == first_turn  # (the second's input: the message useStream edits)

    # As useStream's submit(..., {checkpoint}) sends it: the run goes on from there, in a branch.
    branched = await client.runs.wait(tid, "arithmetic", input="and times two?", checkpoint=first_turn)
    said = [message["content"] for message in branched["messages"]]
    assert said == ["What is 2 + 3?", "5", "and times two?", "10"]  # the branch's history: the first turn only
    state = await client.threads.get_state(tid)
    assert [message["content"] for message in state["values"]["messages"]] == said  # the thread follows it
    after = await client.threads.get_history(tid)
    # Both branches, newest first: the branch's two checkpoints, then the first branch's, which part at the first turn.
    assert [len(state["values"]["messages"]) for state in after] == [4, 3, 4, 3, 2, 1, 0]
    assert after[1]["parent_checkpoint"] == after[3]["parent_checkpoint"] == first_turn  # the same ids, copied
    assert "@" in after[0]["checkpoint"]["checkpoint_id"]  # an event the branch made: named by it

    again = await client.runs.wait(
        tid, "arithmetic", input="and plus one?", checkpoint_id=after[0]["checkpoint"]["checkpoint_id"]
    )
    assert [message["content"] for message in again["messages"]][-2:] == ["and plus one?", "11"]  # the latest: no fork
    with pytest.raises(Exception, match="422|checkpoint"):
        await client.runs.wait(tid, "arithmetic", input="x", checkpoint_id="nope")


async def test_the_history_lists_checkpoints_inside_runs_and_a_run_from_one_goes_on_there_in_a_branch(
    client: Any, tool_runs: Path
) -> None:
    tid = (await client.threads.create())["thread_id"]
    first = await client.runs.wait(tid, "counting", input="What is 6 * 7?")
    history = await client.threads.get_history(tid)
    # Now (the run's end), the tools node done, the model turn that called the tool, the input, the empty thread.
    assert [state["next"] for state in history] == [[], ["agent"], ["tools"], ["agent"], ["__start__"]]
    assert [state["metadata"]["source"] for state in history] == ["loop", "loop", "loop", "input", "input"]
    assert [state["metadata"]["step"] for state in history] == [3, 2, 1, 0, -1]
    assert [kinds(state["values"]["messages"]) for state in history[1:]] == [
        ["human", "ai", "tool"],
        ["human", "ai"],
        ["human"],
        [],
    ]
    assert history[2]["values"]["messages"][1]["tool_calls"][0]["name"] == "calculator"
    for newer, older in zip(history, history[1:], strict=False):
        assert newer["parent_checkpoint"] == older["checkpoint"]
    assert history[-1]["parent_checkpoint"] is None
    assert await client.threads.get_history(tid, limit=2, before=history[1]["checkpoint"]) == history[2:4]
    assert runs_of(tool_runs) == 1

    # With input, a step inside a run is no place to start a run (LangGraph's would write it there).
    after_tool = history[1]["checkpoint"]
    with pytest.raises(httpx.HTTPStatusError, match="inside run"):
        await client.runs.wait(tid, "counting", input="again?", checkpoint=after_tool)

    # With none (useStream's regenerate), the run goes on from the tool's result in a branch: the result
    # is replayed, the tool not run again, and the thread follows the branch.
    again = await client.runs.wait(tid, "counting", input=None, checkpoint=after_tool)
    assert [message["content"] for message in again["messages"]] == [m["content"] for m in first["messages"]]
    assert runs_of(tool_runs) == 1
    state = await client.threads.get_state(tid)
    assert "@" in state["checkpoint"]["checkpoint_id"]  # an event of the branch's own
    branched = await client.threads.get_history(tid)
    ends = [s for s in branched if s["parent_checkpoint"] == after_tool]
    assert len(ends) == 2 and branched[0] == ends[0]  # the branch's end: the newest
    assert ends[0]["checkpoint"] == state["checkpoint"] and ends[1]["checkpoint"] == history[0]["checkpoint"]


def runs_of(tool_runs: Path) -> int:
    return len(tool_runs.read_text().split())
