"""An agent for the branching tests whose answer shows which conversation it was given: it evaluates
the first question's arithmetic ("What is 2 + 3?": 5), then applies each follow-up ("and times ten?",
"and plus 4?") to the answer before, and answers with the number alone. A branch that kept a turn it
should not have (or dropped one) answers another number."""

import re
from collections.abc import Callable

from tests.support.gates import gate
from tokentail.worker.run.context import RunContext

HOLD = " (hold)"  # a question that ends so waits at its run's gate before it answers (tests/support/gates.py)

WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}
STEPS: dict[str, Callable[[int, int], int]] = {
    "times": lambda a, b: a * b,
    "plus": lambda a, b: a + b,
    "minus": lambda a, b: a - b,
}


def first(question: str) -> int:
    match = re.search(r"(\d+)\s*([+*-])\s*(\d+)", question)
    if match is None:
        raise ValueError(f"no sum in {question!r}")
    left, operator, right = int(match[1]), match[2], int(match[3])
    return {"+": left + right, "-": left - right, "*": left * right}[operator]


def follow(value: int, question: str) -> int:
    match = re.search(r"(times|plus|minus)\s+(\w+)", question.lower())
    if match is None:
        raise ValueError(f"no step in {question!r}")
    operand = int(match[2]) if match[2].isdigit() else WORDS[match[2]]
    return STEPS[match[1]](value, operand)


def answer(questions: list[str]) -> int:
    value = first(questions[0])
    for question in questions[1:]:
        value = follow(value, question)
    return value


async def arithmetic(ctx: RunContext) -> None:
    questions = [turn.content.removesuffix(HOLD) for turn in ctx.history if turn.role == "user"] + [ctx.input]
    if ctx.input.endswith(HOLD):
        await gate(ctx)
    await ctx.delta(str(answer(questions)))
