"""The loop of a model-driven agent: stream the model's answer; if it calls tools, run them, show
their progress, feed the results back, and ask again, until it answers without tools.
"""

import asyncio
import json
from typing import Any

from pydantic import ValidationError

from shared.params import RunParams
from worker import metrics
from worker.agents import Agent
from worker.context import RunContext
from worker.providers.base import (
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
from worker.retry import RetryPolicy, stream_with_retries
from worker.tools import Tool, ToolError


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

    for _ in range(agent.max_steps):
        request = ModelRequest(model, messages, [t.spec for t in agent.tools], params)
        text: list[str] = []
        calls: list[ToolCall] = []
        thinking: list[ThinkingBlock] = []
        async for chunk in stream_with_retries(provider, request, policy, on_retry):
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
        if not calls:
            return
        messages.append(Message("assistant", "".join(text), tool_calls=tuple(calls), thinking=tuple(thinking)))
        # Parallel calls of one turn run together; their events interleave, each with its call_id.
        results = await asyncio.gather(*(_run_tool(context, tools, call, tool_timeout) for call in calls))
        for call, (content, failed) in zip(calls, results, strict=True):
            messages.append(Message("tool", content, call_id=call.call_id, is_error=failed))
    raise AgentError(f"agent {agent.name!r} did not answer within {agent.max_steps} steps")


async def _run_tool(context: RunContext, tools: dict[str, Tool], call: ToolCall, time_limit: float) -> tuple[str, bool]:
    """Run one call with its events; returns what the model is told, and whether it failed."""
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
