"""Safe demo tools that ship with tokentail."""

import ast
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tokentail.worker.agent_errors import ToolError
from tokentail.worker.tools import tool

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


def parse(expression: str) -> ast.expr:
    """The expression's syntax tree, if it is arithmetic on numbers (`^` is a power): ToolError
    otherwise. There is no `eval`: the tree is walked node by node, and has no names, calls or
    attributes."""
    if len(expression) > MAX_EXPRESSION:
        raise ToolError(f"expression longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval").body
    except SyntaxError:
        raise ToolError(f"not an arithmetic expression: {expression!r}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            allowed = isinstance(node.value, int | float) and not isinstance(node.value, bool)
        else:
            allowed = isinstance(node, ast.BinOp | ast.UnaryOp) or type(node) in _BINARY or type(node) in _UNARY
        if not allowed:
            raise ToolError(f"only numbers and + - * / // % ** are allowed, not {type(node).__name__}")
    return tree


def is_arithmetic(expression: str) -> bool:
    """Whether `expression` is arithmetic the calculator takes, with at least one operation (`-2` is a
    number, `2 - 1` arithmetic), whatever its value (`1 / 0` is arithmetic too)."""
    try:
        tree = parse(expression)
    except ToolError:
        return False
    return any(isinstance(node, ast.BinOp) for node in ast.walk(tree))


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression (see `parse`), as a calculator shows it: a fraction
    rounded to 12 significant digits (0.1 + 0.2 is 0.3), a whole number as an integer (8 / 2 is 4)."""

    def walk(node: ast.expr) -> int | float:
        if isinstance(node, ast.Constant):
            assert isinstance(node.value, int | float)  # parse allows no other constant
            return node.value
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](walk(node.operand))
        assert isinstance(node, ast.BinOp)  # parse allows nothing else
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

    return _shown(walk(parse(expression)))


def _shown(value: int | float) -> int | float:
    if isinstance(value, int):
        return value
    rounded = float(f"{value:.12g}")
    return int(rounded) if rounded.is_integer() and abs(rounded) < 1e15 else rounded


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
