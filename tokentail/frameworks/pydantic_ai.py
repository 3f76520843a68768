"""PydanticAI agents in a tokentail worker (`pip install tokentail[pydantic-ai]`).

    from tokentail.frameworks.pydantic_ai import pydantic_ai_agent
    weather = pydantic_ai_agent(Agent(model, tools=[get_weather]))

registered like any other agent (`TOKENTAIL_AGENTS='{"weather": "my_module:weather"}'`).

The agent runs through `run_stream_events`, PydanticAI's async event stream of a whole run: the
model's text and thinking as they stream, and each function tool's call and result, in the order
they happen. Leaving its context (as a cancelled run does) cancels the background run task and
waits for it, so a cancel closes the model's HTTP stream and the token spend stops.

Mapping (`stream_event`): a text part's start and deltas -> `message.delta`; a thinking part's ->
`reasoning.delta`; `FunctionToolCallEvent` -> `tool.started` (the whole, validated arguments);
`FunctionToolResultEvent` -> `tool.completed`, or `tool.failed` when the tool raised or its call
was rejected (the outcomes PydanticAI sends to the model as an error); the run's result -> its
usage (`run.completed`), and a structured (non-text) output as a `data.output` event.

Steers (docs/steering.md) go into the agent's message history as user prompts, through a capability
of the run (`Steers`), with PydanticAI's own queue (`RunContext.enqueue`): those the worker was told
of before a model request go into that request; after each model response it looks for more (one
Redis round trip per model turn), which go into the next request, or, when the agent would end
there, into one more request. The model's text is not cut mid-stream.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic_ai import Agent, AgentRunResultEvent
from pydantic_ai import RunContext as PydanticRunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import (
    ERROR_OUTCOMES,
    AgentStreamEvent,
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ThinkingPart,
    ThinkingPartDelta,
    UserPromptPart,
)
from pydantic_ai.models import ModelRequestContext
from pydantic_core import to_jsonable_python

from tokentail.worker.run.context import RunContext

TokentailAgent = Callable[[RunContext], Awaitable[None]]


def history(ctx: RunContext) -> list[ModelMessage]:
    """The session's earlier turns as PydanticAI's `message_history`: each user input a
    `ModelRequest`, each answer (or the part of it streamed before a cancel) a `ModelResponse`."""
    messages: list[ModelMessage] = []
    for turn in ctx.history:
        if turn.role == "user":
            messages.append(ModelRequest(parts=[UserPromptPart(content=turn.content)]))
        elif turn.content:  # an answer cancelled before its first word says nothing
            messages.append(ModelResponse(parts=[TextPart(content=turn.content)]))
    return messages


def pydantic_ai_agent(agent: Agent[Any, Any], deps: Callable[[RunContext], Any] | None = None) -> TokentailAgent:
    """A tokentail agent that runs `agent` on the run's input, after the session's earlier turns;
    `deps(ctx)` makes the run's dependencies, for an agent that has a `deps_type`."""

    async def run(ctx: RunContext) -> None:
        stream = agent.run_stream_events(
            ctx.input,
            message_history=history(ctx),
            deps=deps(ctx) if deps is not None else None,
            capabilities=[Steers(ctx)],
        )
        async with stream as events:
            async for event in events:
                await stream_event(ctx, event)

    return run


class Steers(AbstractCapability[Any]):  # type: ignore[misc]  # (Any where mypy runs: no pydantic_ai there)
    """Takes the run's steers into the agent's history (see the module's docstring)."""

    def __init__(self, run: RunContext) -> None:
        self._run = run

    async def before_model_request(
        self, ctx: PydanticRunContext[Any], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        if self._run.steered:  # told of one since the last look: into this request, and the history
            for text in await self._run.steers():
                ctx.enqueue(text)
        return request_context

    async def after_model_request(
        self, ctx: PydanticRunContext[Any], *, request_context: ModelRequestContext, response: ModelResponse
    ) -> ModelResponse:
        for text in await self._run.steers():
            ctx.enqueue(text)  # the next request, or one more if the agent would end here
        return response


async def stream_event(ctx: RunContext, event: AgentStreamEvent | AgentRunResultEvent[Any]) -> None:
    """One PydanticAI event into the run's stream; the events a UI has no use for are left out
    (part ends, `FinalResultEvent`, output tool calls: the answer has streamed already)."""
    if isinstance(event, PartStartEvent):
        # A part starts with its first chunk of content.
        if isinstance(event.part, TextPart) and event.part.content:
            await ctx.delta(event.part.content)
        elif isinstance(event.part, ThinkingPart) and event.part.content:
            await ctx.reasoning(event.part.content)
    elif isinstance(event, PartDeltaEvent):
        if isinstance(event.delta, TextPartDelta) and event.delta.content_delta:
            await ctx.delta(event.delta.content_delta)
        elif isinstance(event.delta, ThinkingPartDelta) and event.delta.content_delta:
            await ctx.reasoning(event.delta.content_delta)
    elif isinstance(event, FunctionToolCallEvent):
        await ctx.tool_started(event.tool_call_id, event.part.tool_name, event.part.args_as_dict())
    elif isinstance(event, FunctionToolResultEvent):
        part = event.part
        if part.outcome in ERROR_OUTCOMES:
            await ctx.tool_finished(event.tool_call_id, error=part.model_response_str(wrap_if_error=False))
        else:
            await ctx.tool_finished(event.tool_call_id, result=to_jsonable_python(part.content, fallback=str))
    elif isinstance(event, AgentRunResultEvent):
        usage = event.result.usage
        ctx.add_usage(usage.input_tokens, usage.output_tokens)
        if not isinstance(event.result.output, str):  # a structured output: no text streamed it
            await ctx.data("output", to_jsonable_python(event.result.output, fallback=str))
