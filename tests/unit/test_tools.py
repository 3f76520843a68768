import pytest

from tokentail.worker.tools import ToolError, tool
from tokentail.worker.tools.builtin import calculator, current_time, evaluate


@pytest.mark.parametrize(
    ("expression", "value"),
    [("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("2 ^ 10", 1024), ("7 // 2", 3), ("-3 % 2", 1), ("1.5 * 2", 3.0)],
)
def test_calculator_does_arithmetic(expression: str, value: float) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('true')", "not Call"),
        ("().__class__", "not Attribute"),
        ("x + 1", "not Name"),
        ("'a' * 3", "not Constant"),
        ("True + 1", "not Constant"),
        ("1 / 0", "division by zero"),
        ("9 ** 9 ** 9", "exponent too large"),
        ("10.0 ** 99 * 10.0 ** 99", "result too large"),
        ("1 +", "not an arithmetic expression"),
        ("1" * 300, "longer than"),
    ],
)
def test_calculator_refuses_everything_else(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        evaluate(expression)


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


async def test_current_time_knows_time_zones() -> None:
    assert (await current_time.run({"timezone": "Asia/Tokyo"}, 1)).endswith("+09:00")
    with pytest.raises(ToolError, match="unknown time zone"):
        await current_time.run({"timezone": "Mars/Olympus"}, 1)
