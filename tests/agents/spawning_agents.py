"""Agents for tests of child runs (docs/subagents.md): parents that spawn, and children that answer."""

import asyncio

from tests.support.gates import gate
from tokentail import ChildFailed, SpawnRefused
from tokentail.shared.vocabulary.records import child_run_id
from tokentail.worker.run.agents import Agent, continues
from tokentail.worker.run.context import RunContext


async def echo(ctx: RunContext) -> None:
    """A child: answers its input back."""
    await ctx.delta(f"echo[{ctx.input}]")


@continues
async def held_echo(ctx: RunContext) -> None:
    """A child that streams half its answer, waits at its gate, then streams the rest (taken over, it
    goes on from what it streamed)."""
    await ctx.delta(f"half[{ctx.input}]")
    await gate(ctx)
    await ctx.delta(f" rest[{ctx.input}]")


async def failing(ctx: RunContext) -> None:
    raise RuntimeError("the child gave up")


async def two_children(ctx: RunContext, child: str = "echo") -> None:
    """A parent: two children at once, then both answers."""
    await ctx.delta("Asking two. ")
    a, b = await asyncio.gather(ctx.spawn(child, "a", call_id="c_a"), ctx.spawn(child, "b", call_id="c_b"))
    await ctx.delta(f"Got {a.output} and {b.output}.")


async def two_held_children(ctx: RunContext) -> None:
    """A parent of two children that stop at their gates half way."""
    await two_children(ctx, "held_echo")


async def many_children(ctx: RunContext) -> None:
    """A parent: as many children at once as its input says (more than may go at once), then their
    answers in order."""
    count = int(ctx.input)
    results = await asyncio.gather(*(ctx.spawn("echo", str(i)) for i in range(count)))
    await ctx.delta(" ".join(result.output for result in results))


async def handles_a_failure(ctx: RunContext) -> None:
    """A parent whose child fails: it goes on."""
    try:
        await ctx.spawn("failing", "x")
    except ChildFailed as failed:
        await ctx.delta(f"The child failed ({failed.error_type}); I go on.")


async def grandparent(ctx: RunContext) -> None:
    """A parent whose child is a parent: a tree three deep."""
    result = await ctx.spawn("parent", "deep")
    await ctx.delta(f"top<{result.output}>")


@continues
async def following_parent(ctx: RunContext) -> None:
    """A parent that follows its child as it streams (holding its worker), then says what it saw."""
    texts = [
        event.data["text"]
        async for event in ctx.spawn_stream("held_echo", "f", call_id="c_f")
        if event.type == "message.delta"
    ]
    await ctx.delta("followed: " + "".join(texts))


# The built-in loop, whose model may call the `echo` agent as a tool: each call a child run.
DELEGATING = Agent(name="delegating", agents=("echo",), model="scripted")


async def asks_a_child(ctx: RunContext) -> None:
    """A parent whose child asks a person."""
    result = await ctx.spawn("approve", "clean up", call_id="c_q")
    await ctx.delta(f"The child said: {result.output}")


async def one_child_after_another(ctx: RunContext) -> None:
    """A parent that spawns as many children as its input says, each after the one before ended."""
    for i in range(int(ctx.input)):
        result = await ctx.spawn("echo", str(i))
        await ctx.delta(result.output)


async def fan_out(ctx: RunContext) -> None:
    """A parent of four children at once, each a parent of four held children: sixteen leaves, each at
    its gate until released (the tree of issue 84's fan-out)."""
    results = await asyncio.gather(*(ctx.spawn("fan_child", str(i), call_id=f"c{i}") for i in range(4)))
    await ctx.delta(" ".join(result.output for result in results))


async def fan_child(ctx: RunContext) -> None:
    results = await asyncio.gather(*(ctx.spawn("held_echo", f"{ctx.input}{j}", call_id=f"c{j}") for j in range(4)))
    await ctx.delta("+".join(result.output for result in results))


async def follows_a_parent(ctx: RunContext) -> None:
    """A parent that follows a child which is itself a parent of two children (at once), then a child it
    waits for without its worker: at a cap of 1, each waits in its tenant's line."""
    followed = child_run_id(ctx.run_id, "c_f")
    texts = [
        event.data["text"]
        async for event in ctx.spawn_stream("parent", "f", call_id="c_f")
        if event.type == "message.delta" and event.data["run_id"] == followed
    ]
    child = "".join(texts)
    after = await ctx.spawn("echo", "last", call_id="c_l")
    await ctx.delta(f"followed <{child}>, then {after.output}")


async def spawns_a_stranger(ctx: RunContext) -> None:
    """A parent that spawns an agent no catalog has, and says how it was refused."""
    try:
        await ctx.spawn("researcher", "What causes tides?", call_id="tides")
    except SpawnRefused as refused:
        await ctx.delta(f"refused: {refused.type} ({refused.status})")
