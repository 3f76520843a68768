"""The agent protocols' tasks (gateway/commands/tasks.py) and agents' descriptions
(shared/features/agent_catalog.py), on a real gateway, worker and Redis: what every protocol's task is made of."""

from typing import Any

import pytest
from pydantic import SecretStr

from tests.fixtures.stack import Gateway
from tests.integration.test_auth import KEY_A, KEY_B, SECRET
from tests.support.waiting import eventually, scaled
from tokentail.gateway.access.auth import Caller
from tokentail.gateway.commands.tasks import SETTLED, RunTasks, Task
from tokentail.shared.vocabulary.catalog import BUILTIN_AGENTS
from tokentail.shared.vocabulary.errors import InputNotPending, InvalidInput, TaskNotFound

AGENTS = {
    "approve": "tests.agents.asking_agent:approval",
    "described": "tests.agents.described_agents:add",
    "failing": "tests.agents.described_agents:failing",
    "bounded": "tests.agents.described_agents:too_large",
    "slow": "tests.agents.slow_agent:slow_tool_agent",
}


@pytest.fixture
async def gateway(start_gateway: Any, start_worker: Any) -> Gateway:
    started: Gateway = await start_gateway(agents=AGENTS)
    await start_worker(agents=AGENTS)
    return started


def tasks_of(gateway: Gateway, tenant: str = "public") -> RunTasks:
    state = gateway.app.state
    caller = Caller(tenant=tenant)
    return RunTasks(caller, state.auth, state.store, state.runs, gateway.settings, state.run_budget, state.webhooks)


async def settled(gateway: Gateway, tasks: RunTasks, task: Task) -> Task:
    """The task once its run has ended or stopped at a question."""
    done = await tasks.settle(task, gateway.app.state.hub, scaled(30), "test")
    assert done.status in SETTLED, done.status
    return done


async def test_a_task_is_a_run_found_by_its_id_from_its_start_to_its_end(gateway: Gateway) -> None:
    tasks = tasks_of(gateway)
    task = await tasks.start("assistant", "hello there")
    assert task.id == task.session.session_id + task.run.run_id
    assert task.status in ("submitted", "working") and task.created_at <= task.updated_at
    done = await settled(gateway, tasks, task)
    assert (done.status, done.agent_failed, done.agent) == ("completed", False, "assistant")
    assert done.output and done.error is None
    follow_up = await tasks.start("assistant", "and again", context_id=task.session.session_id)
    assert follow_up.session.session_id == task.session.session_id
    assert [t.run.run_id for t in await tasks.of_session(task.session.session_id)] == [
        task.run.run_id,
        follow_up.run.run_id,
    ]
    with pytest.raises(InvalidInput, match="agent 'assistant', not 'approve'"):
        await tasks.start("approve", "x", context_id=task.session.session_id)


async def test_another_tenants_or_a_malformed_task_is_not_found(start_gateway: Any) -> None:
    gateway = await start_gateway(api_keys=SecretStr(f"acme:{KEY_A},beta:{KEY_B}"), secret=SecretStr(SECRET))
    task = await tasks_of(gateway, "acme").start("assistant", "hi")
    for value in (task.id, "nope", task.id[:-1], task.session.session_id + "r_AAAAAAAAAAAA"):
        with pytest.raises(TaskNotFound):
            await tasks_of(gateway, "beta").get(value)
    assert (await tasks_of(gateway, "acme").get(task.id)).run.run_id == task.run.run_id
    with pytest.raises(TaskNotFound):
        await tasks_of(gateway, "acme").get(task.session.session_id + "r_AAAAAAAAAAAA")


async def test_a_question_is_answered_through_the_task_once(gateway: Gateway) -> None:
    tasks = tasks_of(gateway)
    task = await settled(gateway, tasks, await tasks.start("approve", "clean up"))
    assert task.status == "input_required" and len(task.questions) == 1
    assert task.questions[0].asked_at is not None and task.updated_at == task.questions[0].asked_at  # its last change
    input_id = task.questions[0].input_id
    with pytest.raises(InvalidInput, match="schema"):
        await tasks.answer(task, {input_id: {"approved": "yes"}})
    answered = await tasks.answer(task, {input_id: {"approved": True}})
    assert answered.status in ("submitted", "working", "completed")  # going on: never `submitted` again
    assert answered.status != "submitted"
    with pytest.raises(InputNotPending):
        await tasks.answer(answered, {input_id: {"approved": True}})
    done = await settled(gateway, tasks, answered)
    assert done.status == "completed" and done.output == "Checking. Done: deleted."


async def test_an_agents_own_failure_is_told_from_tokentails(gateway: Gateway) -> None:
    tasks = tasks_of(gateway)
    own = await settled(gateway, tasks, await tasks.start("failing", "{}"))
    bound = await settled(gateway, tasks, await tasks.start("bounded", "{}"))
    assert (own.status, own.agent_failed) == ("failed", True)
    assert (bound.status, bound.agent_failed, bound.error and bound.error.type) == ("failed", False, "event_too_large")


async def test_a_cancel_is_idempotent_and_ends_the_run(gateway: Gateway) -> None:
    tasks = tasks_of(gateway)
    task = await tasks.start("slow", "take your time")
    cancelled = await tasks.cancel(task)
    done = await settled(gateway, tasks, cancelled)
    assert done.status == "cancelled"
    assert (await tasks.cancel(done)).status == "cancelled"


async def test_agents_say_what_they_are_and_arguments_are_checked(gateway: Gateway) -> None:
    directory = gateway.app.state.agents  # what the worker published as it started, once it has

    async def published() -> dict[str, Any]:
        infos = {info.name: info for info in await directory.all()}
        assert infos["described"].description, "not published yet"
        return infos

    infos = await eventually(published)
    assert set(infos) == {*BUILTIN_AGENTS, *AGENTS}
    add = infos["described"]
    assert add.description == "Adds two numbers." and add.task_support == "required"
    assert add.input_schema["required"] == ["a", "b"]
    assert add.input_text({"a": 1, "b": 2}) == '{"a":1,"b":2}'
    with pytest.raises(InvalidInput, match="input schema"):
        add.input_text({"a": 1})
    assert infos["slow"].input_text({"input": "hi"}) == "hi"  # the default: the text itself
    assert infos["failing"].description == "Fails as an agent's own error does."  # its docstring
    tasks = tasks_of(gateway)
    done = await settled(gateway, tasks, await tasks.start("described", add.input_text({"a": 2, "b": 40})))
    assert done.output == "42"
    with pytest.raises(InvalidInput, match="unknown agent"):
        await directory.get("nobody")
