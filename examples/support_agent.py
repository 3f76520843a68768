"""Bring your own agent: two ways to serve your code through tokentail.

Name them in TOKENTAIL_AGENTS for the workers and the gateway (which checks the names), with the
module importable (here: run from the repository root):

    export TOKENTAIL_AGENTS='{"support": "examples.support_agent:support",
                              "support-llm": "examples.support_agent:SUPPORT_LLM"}'
    tokentail dev

then create sessions with `"agent": "support"`.
"""

import asyncio

from tokentail import Agent, RunContext, tool

ORDERS = {"A-1001": "shipped on 18 November", "A-1002": "waiting for stock"}


async def find_order(order_id: str) -> str:
    await asyncio.sleep(0.05)  # stands in for your database or API
    return ORDERS.get(order_id.upper(), "not found")


# 1. Your own code, any framework: stream text, status and tool events through the context.
async def support(ctx: RunContext) -> None:
    order_id = next((w.strip(".,?!") for w in ctx.input.split() if w.upper().startswith("A-")), None)
    if order_id is None:
        await ctx.delta("Which order? Please give its id, like A-1001.")
        return
    await ctx.status("Looking up your order...")
    async with ctx.tool("find_order", {"order_id": order_id}) as call:
        call.result = await find_order(order_id)
    await ctx.status("Found it.")
    for word in f"Order {order_id.upper()} is {call.result}.".split(" "):
        await ctx.delta(word + " ")


# 2. A model-driven agent with your tools: tokentail runs the loop (tool calls, progress, retries).
@tool
async def lookup_order(order_id: str) -> str:
    """The status of an order, by its id (like A-1001)."""
    return await find_order(order_id)


SUPPORT_LLM = Agent(
    name="support-llm",
    system_prompt="You are a support agent for an online shop. Look orders up before you answer.",
    tools=(lookup_order,),
    model="openai:gpt-5.4-mini",
)
