"""Agents for the time-travel tests (tests/integration/test_time_travel.py): the built-in loop on the
scripted model with a `calculator` that counts its runs by call id (TOKENTAIL_TEST_TOOL_RUNS, as
tests/agents/counting_agents.py's) and then waits at its call's gate (tests/support/gates.py) until
the test releases it: a run held between one tool's result and the next's, by the test's signal; and
`gated_parent`, whose child is that run (a tree held with its child mid-way)."""

from tests.agents.counting_agents import _count
from tests.support.gates import gate_of
from tokentail.worker.run.agents import Agent, continues
from tokentail.worker.run.context import RunContext
from tokentail.worker.tools import tool


@tool(name="calculator")
async def gated_calculator(expression: str, call_id: str) -> str:
    "Evaluate an arithmetic expression."
    _count(call_id)
    await gate_of(call_id)
    return "42"


GATED = Agent(name="gated", tools=(gated_calculator,), model="scripted")


@continues
async def gated_parent(ctx: RunContext) -> None:
    """A parent that asks `gated` its input, and answers with what it said."""
    await ctx.delta("Asking. ")
    result = await ctx.spawn("gated", ctx.input, call_id="c_ask")
    await ctx.delta(f"It said: {result.output}")
