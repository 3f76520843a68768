"""Agents for the takeover chaos tests: the built-in loop with a `calculator` that counts its runs,
each call id on a line of the file TOKENTAIL_TEST_TOOL_RUNS (the side effect a test observes across
worker processes), then waits TOKENTAIL_TEST_TOOL_SECONDS (0) before it answers."""

import asyncio
import os

from tokentail.worker.agents import Agent
from tokentail.worker.tools import tool


@tool(name="calculator")
async def counting_calculator(expression: str, call_id: str) -> str:
    "Evaluate an arithmetic expression."
    # One short line: an atomic append. A local file, written at once: no need for a thread.
    with open(os.environ["TOKENTAIL_TEST_TOOL_RUNS"], "a") as runs:  # noqa: ASYNC230
        runs.write(f"{call_id}\n")
    await asyncio.sleep(float(os.environ.get("TOKENTAIL_TEST_TOOL_SECONDS", "0")))
    return "42"


COUNTING = Agent(name="counting", tools=(counting_calculator,), model="scripted")
APPROVING = Agent(name="approving", tools=(counting_calculator.asking_first(),), model="scripted")
