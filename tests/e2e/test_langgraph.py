"""LangGraph's Python client (`langgraph-sdk`, pinned) through killed processes, as its users write it:
`client.runs.stream(...)`, nothing more. A gateway killed -9 mid-answer: the SDK's own reconnect (it
follows the stream's `Location` with `Last-Event-ID`) lands on the gateway started again on the same
address and goes on with the text whole and once. A worker killed -9 mid-answer: the run is taken
over and the same stream ends with the answer whole and once (docs/langgraph.md)."""

import asyncio
import signal
from typing import Any

import pytest
from langgraph_sdk import get_client

from tests.e2e.conftest import Stack
from tests.support.waiting import eventually, scaled
from tokentail.worker.providers.scripted import DEFAULT_TOKENS, scripted_tokens

pytestmark = pytest.mark.langgraph

AGENTS = '{"held": "tests.support.gates:held"}'  # a user's function agent: the scripted answer, held halfway
INPUT = "Tell me about resumable streams."
ANSWER = "".join(scripted_tokens(INPUT, DEFAULT_TOKENS))
MODES = ["values", "messages-tuple", "updates"]


def _streamed_text(parts: list[Any]) -> str:
    """The AI text the `messages` parts carried, chunk by chunk, as a UI appends them."""
    return "".join(
        chunk["content"]
        for part in parts
        if part.event == "messages"
        for chunk, _metadata in [part.data]
        if chunk.get("type") in ("AIMessageChunk", "ai") and isinstance(chunk.get("content"), str)
    )


def _final_answer(parts: list[Any]) -> str:
    [*_, last] = [part.data for part in parts if part.event == "values"]
    ai = [message for message in last["messages"] if message["type"] == "ai"]
    return str(ai[-1]["content"])


async def _stream(client: Any, thread_id: str, parts: list[Any]) -> None:
    async for part in client.runs.stream(
        thread_id,
        "held",
        input={"messages": [{"type": "human", "content": INPUT}]},
        stream_mode=MODES,
        stream_resumable=True,
        on_disconnect="continue",
    ):
        parts.append(part)


def _run_id(parts: list[Any]) -> str:
    return str(next(part.data["run_id"] for part in parts if part.event == "metadata"))


async def test_a_gateway_killed_mid_answer_the_sdk_reconnects_by_itself_with_the_text_whole_and_once(
    stack: Stack,
) -> None:
    stack.env["TOKENTAIL_AGENTS"] = AGENTS
    url = stack.gateway()
    stack.worker()
    await asyncio.to_thread(stack.wait_for_workers, 1)
    async with get_client(url=f"{url}/langgraph") as client:
        thread = await client.threads.create()
        parts: list[Any] = []
        streaming = asyncio.create_task(_stream(client, thread["thread_id"], parts))
        await eventually(lambda: _streamed_text(parts), within=scaled(30))
        run_id = _run_id(parts)
        await eventually(lambda: stack.gates.reached(run_id), within=scaled(30))  # half the answer out, held
        stack.gateways[url].send_signal(signal.SIGKILL)  # under the SDK's open stream
        stack.gateways[url].wait()
        port = int(url.rsplit(":", 1)[1])
        await asyncio.to_thread(stack.gateway, port)  # the same address, another process: the SDK retries meanwhile
        stack.gates.release(run_id)
        await asyncio.wait_for(streaming, scaled(60))
        assert _streamed_text(parts) == ANSWER  # every chunk, once
        assert _final_answer(parts) == ANSWER
        values: Any = (await client.threads.get_state(thread["thread_id"]))["values"]
        assert [message["type"] for message in values["messages"]] == ["human", "ai"]
        assert (await client.runs.get(thread["thread_id"], run_id))["status"] == "success"


async def test_a_worker_killed_mid_answer_the_run_goes_on_and_the_stream_ends_with_it_whole(stack: Stack) -> None:
    stack.env |= {"TOKENTAIL_AGENTS": AGENTS, "TOKENTAIL_LEASE_MS": "1500"}
    url = stack.gateway()
    first = stack.worker()
    await asyncio.to_thread(stack.wait_for_workers, 1)
    async with get_client(url=f"{url}/langgraph") as client:
        thread = await client.threads.create()
        parts: list[Any] = []
        streaming = asyncio.create_task(_stream(client, thread["thread_id"], parts))
        await eventually(lambda: parts, within=scaled(30))
        run_id = _run_id(parts)
        await eventually(lambda: stack.gates.reached(run_id), within=scaled(30))
        first.kill()  # mid-answer: it streamed half, and waits at its gate
        first.wait()
        stack.worker()
        await eventually(lambda: stack.gates.reached(run_id) == [1, 2], within=scaled(30))  # taken over: attempt 2
        stack.gates.release(run_id)
        await asyncio.wait_for(streaming, scaled(60))
    assert _streamed_text(parts) == ANSWER
    assert _final_answer(parts) == ANSWER
    assert {part.data["run_id"] for part in parts if part.event == "metadata"} == {run_id}
