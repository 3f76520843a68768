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
