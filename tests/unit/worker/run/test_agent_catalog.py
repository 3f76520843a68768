"""What agents say about themselves (shared/features/agent_catalog.py, worker/run/agents.py `describe`),
and task ids."""

import pytest

from tokentail.shared.features.agent_catalog import INPUT_SCHEMA, AgentInfo, arguments_of
from tokentail.shared.vocabulary.errors import InvalidInput
from tokentail.shared.vocabulary.response_ids import parse_task_id, task_id
from tokentail.worker.run.agents import ASSISTANT, Agent, describe, info_of
from tokentail.worker.run.context import RunContext


async def _documented(ctx: RunContext) -> None:
    """Answers in verse."""


def test_an_agent_says_what_it_is_by_its_fields_its_docstring_or_describe() -> None:
    assert info_of("assistant", ASSISTANT).description.startswith("A helpful assistant")
    assert info_of("poet", _documented) == AgentInfo(name="poet", description="Answers in verse.")
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    described = describe(_documented, description="Counts.", input_schema=schema, task_support="forbidden")
    assert described is _documented
    info = info_of("counter", described)
    assert (info.description, info.input_schema, info.task_support) == ("Counts.", schema, "forbidden")
    modelled = info_of("m", Agent(name="m", description="d", input_schema=schema, task_support="required"))
    assert (modelled.input_schema, modelled.task_support) == (schema, "required")
    assert info_of("plain", Agent(name="plain")).input_schema == INPUT_SCHEMA


def test_a_schema_that_is_none_is_refused_when_declared() -> None:
    with pytest.raises(ValueError, match="not a JSON Schema"):
        describe(_documented, input_schema={"type": "no such type"})


def test_arguments_become_the_runs_input_and_come_back() -> None:
    text = AgentInfo(name="t")
    assert text.takes_text and text.input_text({"input": "hi"}) == "hi"
    with pytest.raises(InvalidInput, match=r"agent 't': the arguments do not match"):
        text.input_text({})
    typed = AgentInfo(name="n", input_schema={"type": "object", "properties": {"n": {"type": "integer"}}})
    assert typed.input_text({"n": 1, "ü": "é"}) == '{"n":1,"ü":"é"}'
    with pytest.raises(InvalidInput, match=r"\['n'\] do not match"):
        typed.input_text({"n": "one"})
    assert arguments_of('{"n":1}') == {"n": 1}
    assert arguments_of("plain text") == {"input": "plain text"}
    assert arguments_of("[1]") == {"input": "[1]"}


def test_a_task_id_names_its_session_and_run() -> None:
    session_id, run_id = "s_" + "a" * 22, "r_" + "b" * 12
    assert parse_task_id(task_id(session_id, run_id)) == (session_id, run_id)
    for bad in ("", session_id, run_id, task_id(session_id, run_id) + "x", "resp_" + task_id(session_id, run_id)):
        assert parse_task_id(bad) is None
