"""MCP at /mcp with the `mcp` Python client, against two gateways and a worker as separate processes,
auth on: what no conformance suite tests and tokentail promises. A task whose worker is killed -9
completes, its answer once; a question asked on one gateway is answered through `tasks/update` on
the other, and a task is cancelled from the other; a wrong key is refused, and a task is another
tenant's to no one. Also the paths a client without the Tasks extension takes: a call that waits
for its answer (and tells how its run goes meanwhile), and a run's question answered by the
client's elicitation callback (SEP-2322); and a client of the revision before, with its handshake."""

import asyncio
import json
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import httpx2
import pytest
from mcp.client.context import ClientRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import ElicitRequestParams, ElicitResult, InputRequiredResult, InputResponses, TextContent

from tests.agents.mcp_agents import WORDS
from tests.clients.mcp_client import cancel_task, connect, get_task, until_status, update_task
from tests.e2e.conftest import Stack
from tests.fixtures.processes import outlives_the_test
from tests.support.waiting import eventually
from tokentail.shared.vocabulary.response_ids import parse_task_id

pytestmark = pytest.mark.mcp


KEY = "tk_mcp_tests_acme_key"
OTHER_KEY = "tk_mcp_tests_other_key"
AGENTS = ["greet", "slow_compute", "confirm_delete", "count_words", "count_words_held", "test_tool_with_task"]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
COUNTED = "".join(f"word {word}. " for word in range(WORDS))


class Gateways:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.urls = [stack.gateway(), stack.gateway()]
        self.workers = [stack.worker()]
        stack.wait_for_workers(1)


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateways]:
    stack = Stack(
        tmp_path_factory.mktemp("mcp"),
        TOKENTAIL_AGENTS=json.dumps({name: f"tests.agents.mcp_agents:{name}" for name in AGENTS}),
        TOKENTAIL_API_KEYS=f"acme:{KEY},other:{OTHER_KEY}",
        TOKENTAIL_SECRET="mcp-tests-secret-" + "x" * 32,
        TOKENTAIL_LEASE_MS="1500",  # a killed worker's run is taken over within about 2 s
    )
    try:
        yield Gateways(stack)
    finally:
        stack.close()


async def test_a_task_whose_worker_is_killed_completes_with_its_answer_once(gateways: Gateways) -> None:
    first, second = gateways.urls
    rest = httpx2.AsyncClient(base_url=first, headers={"Authorization": f"Bearer {KEY}"})
    async with connect(first, KEY) as client, rest:
        meta: Any = {"traceparent": TRACEPARENT}  # its span's parent, with traces on
        created = await client.session.call_tool("count_words_held", {"input": "count"}, meta=meta, allow_claimed=True)
        task_id = created.task_id  # type: ignore[union-attr]
        session_id, run_id = parse_task_id(task_id) or ("", "")
        gates = gateways.stack.gates
        await eventually(lambda: gates.reached(run_id), within=20, what="some words, then the run held at its gate")
        doomed = gateways.workers.pop()
        gateways.workers.append(standby := gateways.stack.worker())
        outlives_the_test(standby.pid)  # the module's stack stops it
        await asyncio.to_thread(gateways.stack.wait_for_workers, 2)
        doomed.kill()
        await asyncio.to_thread(doomed.wait)
        gates.release(run_id)  # the attempt that takes it over counts on
        async with connect(second, KEY) as other:
            task = await until_status(other.session, task_id, "completed", within=60)
        assert task["status"] == "completed"
        assert task["result"]["content"] == [{"type": "text", "text": COUNTED}]  # started over: the text once
        state = (await rest.get(f"/v1/sessions/{session_id}")).json()
    assert state["runs"][0]["attempt"] == 2, "taken over by the other worker"
    assert state["metadata"] == {}  # `_meta`'s trace context goes with the run's record now, traced (issue 45)


async def test_a_question_is_answered_and_a_task_cancelled_through_the_other_gateway(gateways: Gateways) -> None:
    first, second = gateways.urls
    async with connect(first, KEY) as asking, connect(second, KEY) as answering:
        created = await asking.session.call_tool("confirm_delete", {"filename": "a.txt"}, allow_claimed=True)
        task_id = created.task_id  # type: ignore[union-attr]
        waiting = await until_status(answering.session, task_id, "input_required")
        assert waiting["status"] == "input_required"
        ((key, request),) = waiting["inputRequests"].items()
        assert request["method"] == "elicitation/create" and request["params"]["message"] == "Delete a.txt?"
        await update_task(answering.session, task_id, {key: {"action": "accept", "content": {"confirm": True}}})
        done = await until_status(asking.session, task_id, "completed")
        assert done["result"]["content"] == [{"type": "text", "text": "a.txt deleted"}]

        created = await asking.session.call_tool("slow_compute", {"seconds": 60}, allow_claimed=True)
        task_id = created.task_id  # type: ignore[union-attr]
        assert await cancel_task(answering.session, task_id) == {"_meta": _server_info(), "resultType": "complete"}
        assert (await until_status(asking.session, task_id, "cancelled"))["status"] == "cancelled"
        await cancel_task(asking.session, task_id)  # again, and on a task that ended: the same ack
        assert (await get_task(answering.session, task_id))["status"] == "cancelled"


async def test_a_wrong_key_is_refused_and_a_task_is_its_tenant_s_alone(gateways: Gateways) -> None:
    first, second = gateways.urls
    with pytest.RaisesGroup(MCPError, flatten_subgroups=True):  # the client's word for an HTTP error
        async with connect(first, "tk_not_a_key_of_anyone") as client:
            await client.list_tools()
    async with httpx2.AsyncClient() as plain:  # the refusal itself, as HTTP says it
        answer = await plain.post(f"{first}/mcp", headers={"Authorization": "Bearer tk_wrong"}, json={})
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    async with connect(first, KEY) as acme, connect(second, OTHER_KEY) as other:
        created = await acme.session.call_tool("slow_compute", {"seconds": 60}, allow_claimed=True)
        task_id = created.task_id  # type: ignore[union-attr]
        for request in (get_task(other.session, task_id), cancel_task(other.session, task_id)):
            with pytest.raises(MCPError) as unknown:
                await request
            assert unknown.value.error.code == -32602  # as for a task that does not exist
        assert (await get_task(acme.session, task_id))["status"] == "working"
        await cancel_task(acme.session, task_id)


async def test_without_the_tasks_extension_a_call_waits_and_a_question_is_asked_in_the_call(
    gateways: Gateways,
) -> None:
    asked: list[str] = []

    async def elicit(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": False})

    first, second = gateways.urls
    async with connect(first, KEY, tasks=False, elicitation_callback=elicit) as client:
        waited = await client.call_tool("slow_compute", {"seconds": 1, "label": "it"})
        assert waited.content == [TextContent(type="text", text="computed it in 1 s")] and not waited.is_error
        # While it waits, the client is told how the run goes: here, each word as it comes.
        told: list[tuple[float, str | None]] = []

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            told.append((progress, message))

        counted = await client.call_tool("count_words", {"input": "count"}, progress_callback=progress)
        assert counted.content == [TextContent(type="text", text=COUNTED)]
        assert "".join(message or "" for _, message in told) == COUNTED
        assert [number for number, _ in told] == list(range(1, len(told) + 1))
        with pytest.raises(MCPError) as required:
            await client.call_tool("test_tool_with_task", {})
        assert required.value.error.code == -32021
        # The run asks within the call: the client's callback answers, and its retry goes on with the run.
        answered = await client.call_tool("confirm_delete", {"filename": "b.txt"})
        assert asked == ["Delete b.txt?"]
        assert answered.content == [TextContent(type="text", text="b.txt kept")]
        # The retry may go to another gateway: each unseals the requestState (a key from TOKENTAIL_SECRET).
        args = {"filename": "c.txt"}
        question = await client.session.call_tool("confirm_delete", args, allow_input_required=True)
        assert isinstance(question, InputRequiredResult) and question.input_requests
    async with connect(second, KEY, tasks=False, elicitation_callback=elicit) as other:
        (key,) = question.input_requests
        yes: InputResponses = {key: ElicitResult(action="accept", content={"confirm": True})}
        result = await other.session.call_tool(
            "confirm_delete", args, input_responses=yes, request_state=question.request_state
        )
    assert result.content == [TextContent(type="text", text="c.txt deleted")]
    # A client of the revision before (2025-11-25, the initialize handshake), as most are today.
    async with connect(first, KEY, tasks=False, mode="legacy") as legacy:
        assert legacy.server_info is not None and legacy.server_info.version == version("tokentail")
        assert "greet" in {tool.name for tool in (await legacy.list_tools()).tools}
        greeted = await legacy.call_tool("greet", {"name": "Ada"})
        assert greeted.content == [TextContent(type="text", text="Hello, Ada!")]


def _server_info() -> dict[str, Any]:
    return {"io.modelcontextprotocol/serverInfo": {"name": "tokentail", "version": version("tokentail")}}
