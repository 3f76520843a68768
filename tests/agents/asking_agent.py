"""Agents for tests that ask a person (ctx.ask) and go on with the answer."""

import asyncio

from tests.support.gates import gate
from tokentail.worker.run.agents import Agent, continues
from tokentail.worker.run.context import RunContext
from tokentail.worker.tools.builtin import calculator

# The built-in agent loop with a tool that runs only once a person approves the call.
CAREFUL = Agent(name="careful", tools=(calculator.asking_first(),), model="scripted")


async def approval(ctx: RunContext) -> None:
    await ctx.delta("Checking. ")
    async with ctx.tool("delete_files", {"count": 3}) as call:
        answer = await ctx.ask(
            "Delete 3 files?", kind="approval", call_id=call.call_id, expires_in=ctx.params.get("expires_in")
        )
        call.result = "deleted" if answer["approved"] else "kept"
    await ctx.delta(f"Done: {call.result}.")


async def how_much(ctx: RunContext) -> None:
    """A question any number answers (JSON's numbers: NaN and Infinity are not among them)."""
    amount = await ctx.ask("How much?", kind="json", schema={"type": "number"})
    await ctx.delta(f"{amount} it is.")


async def two_questions(ctx: RunContext) -> None:
    colour = await ctx.ask("Which colour?", kind="choice", choices=["red", "blue"])
    await ctx.delta(f"{colour} it is. ")
    size = await ctx.ask("How many?", kind="json", schema={"type": "integer", "minimum": 1})
    await ctx.delta(f"{size} of them.")


async def parallel_approvals(ctx: RunContext) -> None:
    """Two tools needing approval at once, as an agent runs tools in parallel: both questions open
    together, answered in any order."""

    async def delete(what: str) -> str:
        async with ctx.tool("delete", {"what": what}) as call:
            answer = await ctx.ask(f"Delete {what}?", kind="approval", call_id=call.call_id)
            call.result = "deleted" if answer["approved"] else "kept"
        return f"{what} {call.result}"

    await ctx.delta("Checking. ")
    done = await asyncio.gather(delete("logs"), delete("cache"))
    await ctx.delta(", ".join(done) + ".")


async def expiring(ctx: RunContext) -> None:
    """Asks with a short deadline: the run fails when it passes."""
    answer = await ctx.ask("Proceed?", expires_in=0.5)
    await ctx.delta(f"Got: {answer}")


async def expiring_to_default(ctx: RunContext) -> None:
    """Asks with a short deadline: the run goes on with a default answer when it passes."""
    answer = await ctx.ask("Proceed?", expires_in=0.5, on_expiry="default", default="no answer")
    await ctx.delta(f"Got: {answer}")


async def waits_long_for_a_default(ctx: RunContext) -> None:
    """Asks with an hour's deadline and a default answer: only an operator's expiry (the console) ends it soon."""
    answer = await ctx.ask("Proceed?", expires_in=3600, on_expiry="default", default="no answer")
    await ctx.delta(f"Got: {answer}")


BEFORE_THE_QUESTION = "Before the question. "
AFTER_THE_ANSWER = 40  # words, one delta each
HELD_AFTER = 10  # words after the answer, each a delta of its own, before the gate of the agents that hold


async def _ask_then_stream(ctx: RunContext, *, held: bool) -> None:
    await ctx.delta(BEFORE_THE_QUESTION)
    async with ctx.tool("delete_files", {"count": 3}) as call:
        answer = await ctx.ask("Delete 3 files?", kind="approval", call_id=call.call_id)
        call.result = "deleted" if answer["approved"] else "kept"
    for word in range(AFTER_THE_ANSWER):
        if held and word == HELD_AFTER:
            await gate(ctx)  # the test kills the worker here, then releases it (tests/support/gates.py)
        await ctx.delta(f"Word {word}. ")
        if held and word < HELD_AFTER:
            await asyncio.sleep(0.08)  # past the writer's flush window: each word is a delta of its own


async def ask_then_answer(ctx: RunContext) -> None:
    """Streams, asks for an approval, streams the rest of its answer."""
    await _ask_then_stream(ctx, held=False)


async def ask_then_stream(ctx: RunContext) -> None:
    """The same, but waits at its gate HELD_AFTER words after the answer, until the test releases it.
    Not `@continues`: a takeover starts it over (`run.retrying`), and the new attempt streams the text
    before the question again."""
    await _ask_then_stream(ctx, held=True)


@continues
async def ask_then_go_on(ctx: RunContext) -> None:
    """The same as `ask_then_stream`, marked `@continues`: a takeover goes on from what clients have
    (`run.continued`)."""
    await _ask_then_stream(ctx, held=True)
