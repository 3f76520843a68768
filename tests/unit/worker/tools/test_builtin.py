"""worker/tools/builtin.py: the calculator's arithmetic and nothing else, the time in any time zone."""

import pytest

from tokentail.worker.agent_errors import ToolError
from tokentail.worker.tools.builtin import current_time, evaluate


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


async def test_current_time_knows_time_zones() -> None:
    assert (await current_time.run({"timezone": "Asia/Tokyo"}, 1)).endswith("+09:00")
    with pytest.raises(ToolError, match="unknown time zone"):
        await current_time.run({"timezone": "Mars/Olympus"}, 1)
