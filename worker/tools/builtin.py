"""Safe demo tools that ship with tokentail."""

import ast
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tokentail.worker.tools import ToolError, tool

_BINARY: dict[type[ast.operator], Callable[[Any, Any], int | float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], int | float]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
MAX_EXPRESSION = 200
MAX_MAGNITUDE = 1e100


def evaluate(expression: str) -> int | float:
    """Arithmetic on numbers, walked node by node: there is no `eval`, no names, no calls, no attributes."""
    if len(expression) > MAX_EXPRESSION:
        raise ToolError(f"expression longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError:
        raise ToolError(f"not an arithmetic expression: {expression!r}") from None

    def walk(node: ast.AST) -> int | float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](walk(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and (abs(right) > 100 or abs(left) > 1e6):
                raise ToolError("exponent too large")
            try:
                value = _BINARY[type(node.op)](left, right)
            except ZeroDivisionError:
                raise ToolError("division by zero") from None
            if abs(value) > MAX_MAGNITUDE:
                raise ToolError("result too large")
            return value
        raise ToolError(f"only numbers and + - * / // % ** are allowed, not {type(node).__name__}")

    return walk(tree.body)


@tool
def calculator(expression: str) -> int | float:
    """Evaluate an arithmetic expression such as `(2 + 3) * 4 / 5`: numbers and + - * / // % ** only."""
    return evaluate(expression)


@tool
def current_time(timezone: str = "UTC") -> str:
    """The current date and time in an IANA time zone such as `Europe/Paris`, ISO 8601."""
    try:
        zone = ZoneInfo(timezone) if timezone != "UTC" else UTC
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"unknown time zone {timezone!r}") from None
    return datetime.now(zone).isoformat(timespec="seconds")


BUILTIN_TOOLS = {t.name: t for t in (calculator, current_time)}
