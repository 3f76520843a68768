"""The loop of a model-driven agent: stream the model's answer; if it calls tools, run them, show
their progress, feed the results back, and ask again, until it answers without tools.

A tool that needs approval runs once a person approves the call (`ctx.ask`, kind `approval`). The
run waits without a worker meanwhile, and goes on from the messages recorded with the question (its
`state`): the model is not asked again for what it said before it.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from pydantic import ValidationError

from tokentail.shared.params import RunParams
from tokentail.worker import metrics
from tokentail.worker.agents import Agent
from tokentail.worker.context import RunContext
from tokentail.worker.providers.base import (
    Chunk,
    InvalidRequest,
    Message,
    ModelRequest,
    Provider,
    ProviderError,
    ReasoningDelta,
    TextDelta,
    ThinkingBlock,
    ToolCall,
    Usage,
)
from tokentail.worker.retry import RetryPolicy, stream_with_retries
from tokentail.worker.tools import Tool, ToolError


class AgentError(Exception):
    pass


def first_messages(agent: Agent, context: RunContext) -> list[Message]:
    messages = [Message("system", agent.system_prompt)] if agent.system_prompt else []
    # Empty turns (a run that ended without text) are left out: some APIs refuse empty content.
    messages += [Message(turn.role, turn.content) for turn in context.history if turn.content]
    messages.append(Message("user", context.input))
    return messages


async def run_model_agent(
    agent: Agent, context: RunContext, provider: Provider, model: str, policy: RetryPolicy, tool_timeout: float
) -> None:
    tools = {t.name: t for t in agent.tools}
    messages = first_messages(agent, context)
    try:
        params = RunParams.model_validate(context.params)
    except ValidationError as exc:  # a run recorded before params were checked at the gateway
        raise InvalidRequest(f"invalid params: {exc}") from None

    async def on_retry(error: ProviderError, delay: float) -> None:
        metrics.PROVIDER_ERRORS.labels(context.writer.provider, error.kind).inc()
        await context.status(f"{error} Retrying in {delay:.1f} s.")

    first_step, pending = 0, None
    if (state := context.resumed_state()) is not None:  # going on after an approval
        messages, first_step = [_message(m) for m in state["messages"]], state["step"]
        pending = ([_call(c) for c in state["calls"]], dict(state["decisions"]))
        context.usage = dict(state["usage"])  # of the model calls made before the question
    for step in range(first_step, agent.max_steps):
        if pending is None:
            request = ModelRequest(model, messages, [t.spec for t in agent.tools], params)
            turn = await _model_turn(context, stream_with_retries(provider, request, policy, on_retry))
            if not turn.tool_calls:
                return
            messages.append(turn)
            calls, decisions = list(turn.tool_calls), dict[str, bool]()
        else:
            (calls, decisions), pending = pending, None
        await _approve(context, tools, calls, decisions, messages, step)
        # Parallel calls of one turn run together; their events interleave, each with its call_id.
        results = await asyncio.gather(
            *(_run_tool(context, tools, call, tool_timeout, decisions.get(call.call_id)) for call in calls)
        )
        for call, (content, failed) in zip(calls, results, strict=True):
            messages.append(Message("tool", content, call_id=call.call_id, is_error=failed))
    raise AgentError(f"agent {agent.name!r} did not answer within {agent.max_steps} steps")


async def _model_turn(context: RunContext, chunks: AsyncIterator[Chunk]) -> Message:
    """Stream one answer of the model to the run; what it said, as the assistant's message."""
    text: list[str] = []
    calls: list[ToolCall] = []
    thinking: list[ThinkingBlock] = []
    async for chunk in chunks:
        if isinstance(chunk, TextDelta):
            text.append(chunk.text)
            await context.delta(chunk.text)
        elif isinstance(chunk, ReasoningDelta):
            await context.reasoning(chunk.text)
        elif isinstance(chunk, ThinkingBlock):
            thinking.append(chunk)
        elif isinstance(chunk, ToolCall):
            calls.append(chunk)
        elif isinstance(chunk, Usage):
            context.add_usage(chunk.input_tokens, chunk.output_tokens)
    return Message("assistant", "".join(text), tool_calls=tuple(calls), thinking=tuple(thinking))


async def _approve(
    context: RunContext,
    tools: dict[str, Tool],
    calls: list[ToolCall],
    decisions: dict[str, bool],
    messages: list[Message],
    step: int,
) -> None:
    """Ask a person about each call of a tool that needs approval, one after the other, recording the
    decisions; a call waiting for its answer is shown started."""
    for call in calls:
        if call.call_id in decisions or not (call.name in tools and tools[call.name].needs_approval):
            continue
        await context.tool_started(call.call_id, call.name, call.arguments)
        state = {
            "messages": [asdict(m) for m in messages],
            "step": step,
            "calls": [asdict(c) for c in calls],
            "decisions": decisions,
            "usage": context.usage,
        }
        arguments = json.dumps(call.arguments, ensure_ascii=False)
        answer = await context.ask(f"Run {call.name} {arguments}?", kind="approval", call_id=call.call_id, state=state)
        decisions[call.call_id] = bool(answer["approved"])


def _message(data: dict[str, Any]) -> Message:
    return Message(
        role=data["role"],
        content=data["content"],
        tool_calls=tuple(_call(c) for c in data["tool_calls"]),
        call_id=data["call_id"],
        is_error=data["is_error"],
        thinking=tuple(ThinkingBlock(t["block"]) for t in data["thinking"]),
    )


def _call(data: dict[str, Any]) -> ToolCall:
    return ToolCall(data["call_id"], data["name"], data["arguments"], data["invalid_arguments"])


async def _run_tool(
    context: RunContext, tools: dict[str, Tool], call: ToolCall, time_limit: float, approved: bool | None
) -> tuple[str, bool]:
    """Run one call with its events; returns what the model is told, and whether it failed.
    `approved`: a person's decision on a call that needed one (its start is shown already)."""
    if approved is not None:
        if not approved:
            await context.tool_finished(call.call_id, error="a person denied this call", denied=True)
            return "error: the user did not approve this call", True
        try:
            result = _jsonable(await tools[call.name].run(call.arguments, time_limit))
        except ToolError as exc:
            await context.tool_finished(call.call_id, error=exc)
            return f"error: {exc}", True
        await context.tool_finished(call.call_id, result=result)
        return json.dumps(result, ensure_ascii=False), False
    try:
        async with context.tool(call.name, call.arguments, call_id=call.call_id) as scope:
            if call.invalid_arguments is not None:
                raise ToolError(f"arguments are not a JSON object: {call.invalid_arguments[:200]!r}")
            if call.name not in tools:
                raise ToolError(f"there is no tool {call.name!r}; available: {', '.join(sorted(tools)) or 'none'}")
            scope.result = _jsonable(await tools[call.name].run(call.arguments, time_limit))
    except ToolError as exc:
        return f"error: {exc}", True
    return json.dumps(scope.result, ensure_ascii=False), False


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
