"""Agents as MCP tools: the Tasks extension's fixtures of the conformance suite
(@modelcontextprotocol/conformance, `tasks-*` scenarios), written as a user writes agents, and
configured with TOKENTAIL_AGENTS (tests/node/test_mcp_conformance.py)."""

import asyncio
import json

from tests.support.gates import gate
from tokentail import RunContext, describe
from tokentail.shared.vocabulary.events import MAX_EVENT_BYTES


async def _greet(ctx: RunContext) -> None:
    await ctx.delta(f"Hello, {ctx.arguments['name']}!")


greet = describe(
    _greet,
    description="Greets someone by name, at once.",
    input_schema={"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    task_support="forbidden",
)


async def _slow_compute(ctx: RunContext) -> None:
    seconds = ctx.arguments.get("seconds", 1)
    await asyncio.sleep(seconds)  # a cancel ends the run here (run.cancelled)
    await ctx.delta(f"computed {ctx.arguments.get('label', 'it')} in {seconds} s")


slow_compute = describe(
    _slow_compute,
    description="Computes for `seconds` seconds, then answers.",
    input_schema={
        "type": "object",
        "properties": {"seconds": {"type": "number", "minimum": 0}, "label": {"type": "string"}},
    },
)


async def _failing_job(ctx: RunContext) -> None:
    await asyncio.sleep(1)
    raise RuntimeError("the job failed, as it always does")  # the agent's own error: a tool that failed


failing_job = describe(
    _failing_job,
    description="Fails after about a second.",
    input_schema={"type": "object", "properties": {}},
    task_support="required",
)


async def _protocol_error_job(ctx: RunContext) -> None:
    await asyncio.sleep(1)
    await ctx.data("blob", "x" * MAX_EVENT_BYTES)  # over tokentail's bound: the run fails of tokentail's making


protocol_error_job = describe(
    _protocol_error_job,
    description="Breaks a bound of tokentail's after about a second.",
    input_schema={"type": "object", "properties": {}},
)


CONFIRM = {"type": "object", "properties": {"confirm": {"type": "boolean"}}, "required": ["confirm"]}


async def _confirm_delete(ctx: RunContext) -> None:
    filename = ctx.arguments["filename"]
    await asyncio.sleep(1)  # looks for the file first: the call has become a task by the time it asks
    answer = await ctx.ask(f"Delete {filename}?", kind="json", schema=CONFIRM)
    await ctx.delta(f"{filename} {'deleted' if answer['confirm'] else 'kept'}")


confirm_delete = describe(
    _confirm_delete,
    description="Deletes a file once a person confirms.",
    input_schema={"type": "object", "properties": {"filename": {"type": "string"}}, "required": ["filename"]},
)


NAME = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


async def _multi_input(ctx: RunContext) -> None:
    await asyncio.sleep(1)  # works first, as confirm_delete: the call has become a task by the time it asks
    name, confirm = await asyncio.gather(  # two questions open at once, answered in any order
        ctx.ask("Your name?", kind="json", schema=NAME), ctx.ask("Go ahead?", kind="json", schema=CONFIRM)
    )
    await ctx.delta(f"{name['name']}: {'done' if confirm['confirm'] else 'stopped'}")


multi_input = describe(
    _multi_input,
    description="Asks two questions at once, then answers with both.",
    input_schema={"type": "object", "properties": {}},
)


async def _test_tool_with_task(ctx: RunContext) -> None:
    answer = await ctx.ask("What is your name?", kind="json", schema=NAME)  # at once: the call asks it
    await asyncio.sleep(1)  # then works: the call with the answer becomes a task
    await ctx.delta(f"Hello, {answer['name']}!")


test_tool_with_task = describe(
    _test_tool_with_task,
    description="Asks a name, then greets after a while.",
    input_schema={"type": "object", "properties": {}},
    task_support="required",
)


CONTACT = {  # JSON Schema 2020-12, served in tools/list as the agent declares it
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


async def _json_schema_2020_12_tool(ctx: RunContext) -> None:
    await ctx.delta(f"contact {ctx.arguments.get('name', 'someone')}")


json_schema_2020_12_tool = describe(
    _json_schema_2020_12_tool, description="Tool with JSON Schema 2020-12 features", input_schema=CONTACT
)


WORDS = 40
HELD_AFTER = 10  # words


async def count_words(ctx: RunContext) -> None:
    """Counts to WORDS, a word about every 80 ms."""
    for word in range(WORDS):
        await ctx.delta(f"word {word}. ")
        await asyncio.sleep(0.08)


async def count_words_held(ctx: RunContext) -> None:
    """Counts to WORDS, but waits at its gate (tests/support/gates.py) after HELD_AFTER words: a worker can be
    killed mid-way. Not `@continues`: a takeover starts it over."""
    for word in range(WORDS):
        if word == HELD_AFTER:
            await gate(ctx)
        await ctx.delta(f"word {word}. ")


async def _delegate(ctx: RunContext) -> None:
    said = await ctx.spawn("confirm_delete", json.dumps(ctx.arguments), call_id="c_helper")  # a child run that asks
    await ctx.delta(f"the helper said: {said.output}")


delegate = describe(
    _delegate,
    description="Has a helper (a child run of confirm_delete) delete a file, and says what it said.",
    input_schema={"type": "object", "properties": {"filename": {"type": "string"}}, "required": ["filename"]},
)
