"""Agents for the takeover chaos tests: the built-in loop with a `calculator` that counts its runs,
each call id on a line of the file TOKENTAIL_TEST_TOOL_RUNS (the side effect a test observes across
worker processes); its first run for a call id then waits TOKENTAIL_TEST_TOOL_SECONDS (0: a tool
that hangs until its worker is killed), a run after it answers at once. And an agent of your own
that goes on after a takeover (`@continues`) with a step and the text clients have."""

import asyncio
import os

from tests.support.gates import gate
from tokentail.worker.run.agents import Agent, continues
from tokentail.worker.run.context import RunContext
from tokentail.worker.tools import tool

WORDS = 160  # of the own agent's answer: about 9 s


def _count(key: str) -> bool:
    """Note a run of `key`; whether it is its first. A local file: no need for a thread."""
    path = os.environ["TOKENTAIL_TEST_TOOL_RUNS"]
    with open(path) as runs:
        first = f"{key}\n" not in runs.read()
    with open(path, "a") as runs:  # one short line: an atomic append
        runs.write(f"{key}\n")
    return first


@tool(name="calculator")
async def counting_calculator(expression: str, call_id: str) -> str:
    "Evaluate an arithmetic expression."
    if _count(call_id):
        await asyncio.sleep(float(os.environ.get("TOKENTAIL_TEST_TOOL_SECONDS", "0")))
    return "42"


def own_answer(result: int) -> str:
    return f"The result is {result}." + "".join(f" Word {i}." for i in range(WORDS))


HELD_AT = 80  # characters of the answer before the gate of `stepping_held`


async def _stepping(ctx: RunContext, *, held: bool) -> None:
    async def compute() -> int:
        _count(f"step-{ctx.run_id}")
        return 42

    answer = own_answer(await ctx.step("compute", compute))
    had = len(ctx.resume_text())
    for start in range(had, len(answer), 8):
        if held and start == HELD_AT:
            await gate(ctx)
        await ctx.delta(answer[start : start + 8])
        await asyncio.sleep(0.05)


@continues
async def stepping(ctx: RunContext) -> None:
    """Computes once (a step), then streams an answer word by word, going on from what clients have."""
    await _stepping(ctx, held=False)


@continues
async def stepping_held(ctx: RunContext) -> None:
    """The same, but waits at its gate (tests/support/gates.py) HELD_AT characters into its answer, until the
    test releases it; an attempt that goes on from past there does not wait."""
    await _stepping(ctx, held=True)


COUNTING = Agent(name="counting", tools=(counting_calculator,), model="scripted")
APPROVING = Agent(name="approving", tools=(counting_calculator.asking_first(),), model="scripted")
