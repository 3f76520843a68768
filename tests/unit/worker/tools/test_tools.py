"""`tool` (worker/tools/__init__.py): a schema from the function's signature and docstring, arguments checked
before the function runs."""

import pytest

from tokentail.worker.agent_errors import ToolError
from tokentail.worker.tools import tool
from tokentail.worker.tools.builtin import calculator, current_time


def test_schemas_come_from_the_signature_and_docstring() -> None:
    assert calculator.spec.parameters == {
        "type": "object",
        "properties": {"expression": {"title": "Expression", "type": "string"}},
        "required": ["expression"],
    }
    assert calculator.spec.description.startswith("Evaluate an arithmetic expression")
    assert current_time.spec.parameters["required"] == []


async def test_arguments_are_validated_before_the_function_runs() -> None:
    calls = []

    @tool(name="record")
    def record(count: int) -> int:
        """Remember a count."""
        calls.append(count)
        return count

    assert await record.run({"count": "3"}, 1) == 3  # lax coercion, as pydantic does
    with pytest.raises(ToolError, match="invalid arguments for record: count"):
        await record.run({"count": "three"}, 1)
    with pytest.raises(ToolError, match="invalid arguments"):
        await record.run({"count": 1, "extra": 2}, 1)
    assert calls == [3]


class _Context:
    """Stands in for the run's RunContext: what a tool with a `ctx` parameter is given."""


async def test_a_tool_with_ctx_and_call_id_is_given_them_and_the_model_is_not_told_of_them() -> None:
    @tool
    async def note(text: str, ctx: _Context, call_id: str) -> str:
        """Note something."""
        return f"{text} {type(ctx).__name__} {call_id}"

    assert note.spec.parameters == {
        "type": "object",
        "properties": {"text": {"title": "Text", "type": "string"}},
        "required": ["text"],
    }
    assert await note.run({"text": "hi"}, 1, "call_1", _Context()) == "hi _Context call_1"
    with pytest.raises(ToolError, match="invalid arguments for note"):
        await note.run({"text": "hi"}, 1, "call_1", object())  # (a context of the annotated class only)
