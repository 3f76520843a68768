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

Agent delegation (an agent calling another agent in a tool, `usage=ctx.usage`, as PydanticAI's
multi-agent docs write it) shows the delegate's run as a child run on the wire
(docs/subagents-frameworks.md) when its events come to tokentail: give the delegate's run (or the
delegate `Agent`) `event_stream_handler=subagent_events`:

    @parent.tool
    async def joke_factory(ctx: RunContext[None], count: int) -> list[str]:
        r = await joke_agent.run(f"Please generate {count} jokes.", usage=ctx.usage,
                                 event_stream_handler=subagent_events)
        return r.output

The parent's `tool.started` for the call, the child's `run.spawned` (its id from the call's id), the
delegate's text, thinking and tool calls with the child's `run_id`, its `run.completed` when the tool
returns (its result as the output; `run.failed` if it raised), then the parent's `tool.completed`. The
child's text is not the run's answer; its usage counts in the parent's, as `usage=ctx.usage` adds it.
"""

import json
from collections.abc import AsyncIterable, Awaitable, Callable
from contextvars import ContextVar
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
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.models import ModelRequestContext
from pydantic_core import to_jsonable_python

from tokentail.worker.event_sink import EventSink
from tokentail.worker.run.children import InlineChild
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
        delegations = Delegations(ctx)
        stream = agent.run_stream_events(
            ctx.input,
            message_history=history(ctx),
            deps=deps(ctx) if deps is not None else None,
            capabilities=[Steers(ctx, delegations)],
        )
        async with stream as events:
            async for event in events:
                if isinstance(event, FunctionToolCallEvent):  # (once, whether a delegate's child came first)
                    await delegations.tool_started(event.tool_call_id, event.part.tool_name, event.part.args_as_dict())
                else:
                    await stream_event(ctx, event)

    return run


class Steers(AbstractCapability[Any]):  # type: ignore[misc]  # (Any where mypy runs: no pydantic_ai there)
    """Takes the run's steers into the agent's history (see the module's docstring)."""

    def __init__(self, run: RunContext, delegations: "Delegations | None" = None) -> None:
        self._run = run
        self._delegations = delegations

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

    async def wrap_tool_execute(
        self, ctx: PydanticRunContext[Any], *, call: ToolCallPart, tool_def: Any, args: Any, handler: Any
    ) -> Any:
        """Around each tool: an agent it delegates to, that streams to `subagent_events`, is its child."""
        if self._delegations is None:
            return await handler(args)
        shown = _CALL.set((self._delegations, call))  # seen by the delegate's runs in the tool
        try:
            result = await handler(args)
        except Exception as exc:
            await self._delegations.end(call.tool_call_id, error=exc)
            raise
        finally:
            _CALL.reset(shown)
        await self._delegations.end(call.tool_call_id, output=result)
        return result


class Delegations:
    """The agents a run's tools delegate to, each a child of the run by the id of its tool call."""

    def __init__(self, run: RunContext) -> None:
        self._run = run
        self.started: set[str] = set()  # the run's tool calls shown started
        self._open: dict[str, InlineChild] = {}

    async def tool_started(self, call_id: str, name: str, arguments: dict[str, Any]) -> None:
        if call_id not in self.started:  # (the run's stream and a delegate's may come to it first)
            self.started.add(call_id)
            await self._run.tool_started(call_id, name, arguments)

    async def child(self, call: ToolCallPart, name: str) -> InlineChild:
        if (child := self._open.get(call.tool_call_id)) is None:
            arguments = call.args_as_dict()
            await self.tool_started(call.tool_call_id, call.tool_name, arguments)
            given = json.dumps(arguments, ensure_ascii=False)
            child = await self._run.subagent(name, call_id=call.tool_call_id, input=given)
            self._open[call.tool_call_id] = child
        return child

    async def end(self, call_id: str, *, output: Any = None, error: BaseException | None = None) -> None:
        if (child := self._open.pop(call_id, None)) is None:
            return
        if error is not None:
            await child.fail(error)
        else:
            given = output if isinstance(output, str) else json.dumps(to_jsonable_python(output, fallback=str))
            await child.end(given)


_CALL: ContextVar[tuple[Delegations, ToolCallPart] | None] = ContextVar("tokentail_pydantic_ai_call", default=None)


async def subagent_events(ctx: PydanticRunContext[Any], events: AsyncIterable[AgentStreamEvent]) -> None:
    """`event_stream_handler=subagent_events` of an agent run inside a tool of a tokentail run's agent:
    its events are a child run of the tokentail run (elsewhere they are passed by)."""
    delegating = _CALL.get()
    child = None
    async for event in events:
        if delegating is not None:
            delegations, call = delegating
            agent = ctx.agent.name if ctx.agent is not None and ctx.agent.name else "agent"
            child = child or await delegations.child(call, agent)
            await stream_event(child, event)


async def stream_event(ctx: EventSink, event: AgentStreamEvent | AgentRunResultEvent[Any]) -> None:
    """One PydanticAI event into the run's stream (or a child's: a delegate's); the events a UI has no
    use for are left out (part ends, `FinalResultEvent`, output tool calls: the answer has streamed already)."""
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
