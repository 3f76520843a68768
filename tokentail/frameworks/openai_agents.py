"""OpenAI Agents SDK agents in a tokentail worker (`pip install tokentail[openai-agents]`).

    from tokentail.frameworks.openai_agents import openai_agent
    weather = openai_agent(Agent(name="weather", instructions="...", tools=[get_weather]))

registered like any other agent (`TOKENTAIL_AGENTS='{"weather": "my_module:weather"}'`). Each run
is `Runner.run_streamed(agent, items)`, the session's earlier turns and the run's input as the SDK's
input items, and its `stream_events()` become tokentail events:

- the model's text deltas (raw `response.output_text.delta`) -> `message.delta`, and its reasoning
  deltas -> `reasoning.delta`;
- a `tool_called` item -> `tool.started` (with the whole arguments: the SDK emits the item once the
  model has finished the call), its `tool_output` item -> `tool.completed`; or `tool.failed` when
  the tool raised (or a person rejected the call), which the SDK answers the model with a message
  in the tool's place: the adapter learns of it through `RunConfig.tool_error_formatter`, and
  passes the call on to a formatter of yours;
- every event carries the name of the agent that made it (`agent`), which changes on a handoff
  (`agent_updated_stream_event`);
- the run's usage, summed by the SDK over its model calls, -> `run.completed`.

Agents used as tools (`Agent.as_tool(...)`) run their own, nested run inside the tool call; the SDK
streams its events only to the tool's `on_stream` callback. Give it `subagent_events` (or call it
from yours), and the nested run is a child run of the tokentail run on the wire
(docs/subagents-frameworks.md):

    researcher_tool = researcher.as_tool(
        tool_name="research", tool_description="Look it up.", on_stream=subagent_events
    )

the parent's `tool.started` for the call, the child's `run.spawned` (its id from the call's id), its
text, reasoning and tool calls with the child's `run_id` (and the nested agent's name as `agent`), its
`run.completed` with the tool's output (`run.failed` when the tool failed), then the parent's
`tool.completed`. The child's text is not the run's answer. A handoff is not a child: the agent handed
to takes the conversation over and answers the user (the SDK's own words), so its text is the run's
answer, labelled with its name (`agent`), as before.

Steers (docs/steering.md) are taken between the SDK's turns: before a model call, those the worker
was told of go into its input as user messages (through `RunConfig.call_model_input_filter`,
after which yours, if any, is called), where they stay for the run's later calls; when the run ends,
the adapter looks for more (one Redis round trip), and if one was sent, runs the last agent again on
the whole conversation with it. The SDK's streams are not cut mid-text.

`run_streamed` runs the agent loop in a background task of the SDK's. When tokentail cancels the
run's task (a client's cancel, a stopping worker), the adapter calls `result.cancel()`, which
cancels that background task and with it the model's HTTP stream: the token spend stops.
"""

import dataclasses
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, NamedTuple

from agents import (
    Agent,
    AgentToolStreamEvent,
    AgentUpdatedStreamEvent,
    RawResponsesStreamEvent,
    RunConfig,
    RunItemStreamEvent,
    Runner,
    ToolCallItem,
    ToolCallOutputItem,
    TResponseInputItem,
)
from agents.run_config import DEFAULT_MAX_TURNS, CallModelData, ModelInputData, ToolErrorFormatterArgs

from tokentail.frameworks import as_json
from tokentail.worker.event_sink import EventSink
from tokentail.worker.run.children import InlineChild
from tokentail.worker.run.context import RunContext

TokentailAgent = Callable[[RunContext], Awaitable[None]]
logger = logging.getLogger(__name__)

TEXT_DELTA = "response.output_text.delta"
REASONING_DELTAS = frozenset({"response.reasoning_text.delta", "response.reasoning_summary_text.delta"})


def input_items(ctx: RunContext) -> list[TResponseInputItem]:
    """The session's earlier turns, then the run's input, as the SDK's input items. Turns with no
    text (a run that failed before answering) are left out: a model is not sent empty messages."""
    items: list[TResponseInputItem] = [
        {"role": turn.role, "content": turn.content} for turn in ctx.history if turn.content
    ]
    items.append({"role": "user", "content": ctx.input})
    return items


def openai_agent(
    agent: Agent[Any],
    *,
    run_config: RunConfig | None = None,
    max_turns: int = DEFAULT_MAX_TURNS,
    context: Callable[[RunContext], Any] | None = None,
) -> TokentailAgent:
    """A tokentail agent that runs `agent` (and whatever it hands off to) on the run's input.
    `context(ctx)`, when given, makes the SDK's context object of each run (what the tools see as
    `RunContextWrapper.context`)."""

    async def run(ctx: RunContext) -> None:
        failed: dict[str, Failure] = {}
        subagents = Subagents(ctx, failed)
        shown = _SUBAGENTS.set(subagents)  # (before the SDK's run: its tasks see it, `subagent_events` too)
        try:
            await _run(ctx, failed, subagents)
        except BaseException as exc:
            await subagents.end_open(exc)
            raise
        finally:
            _SUBAGENTS.reset(shown)

    async def _run(ctx: RunContext, failed: dict[str, Failure], subagents: "Subagents") -> None:
        steers = Steers(ctx)
        config = steers.taking(_telling_failures(run_config or RunConfig(), failed))
        items, current = input_items(ctx), agent
        made = context(ctx) if context is not None else None  # one for the run: tools may keep state in it
        while True:
            result = Runner.run_streamed(
                current,
                items,
                context=made,
                max_turns=max_turns,
                run_config=config,
            )
            subagents.label = current.name
            try:
                async for event in result.stream_events():
                    if isinstance(event, AgentUpdatedStreamEvent):  # the start, and each handoff
                        subagents.label = event.new_agent.name
                    else:
                        await _emit(ctx, event, subagents.label, failed, subagents)
            finally:
                # A no-op once the run is over. Cancelled while this task was not waiting on the SDK's
                # queue (writing an event, say), the SDK would not know: stop its run loop here.
                result.cancel()
            usage = result.context_wrapper.usage
            ctx.add_usage(usage.input_tokens, usage.output_tokens)
            if not (sent := await ctx.steers()):
                return
            # Sent while it made its last answer: the conversation goes on with them.
            items, current = [*steers.placed(result.to_input_list()), *map(_user, sent)], result.last_agent
            steers.taken.clear()

    return run


class Steers:
    """The steers taken in during one `run_streamed`, each with where it goes in the SDK's input
    (the input's length when it was taken: the SDK's input only grows within a run)."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self.taken: list[tuple[int, TResponseInputItem]] = []

    def placed(self, items: list[TResponseInputItem]) -> list[TResponseInputItem]:
        """`items` with the steers taken in at their places."""
        placed = list(items)
        for at, message in reversed(self.taken):
            placed.insert(at, message)
        return placed

    def taking(self, config: RunConfig) -> RunConfig:
        """`config`, with a model input filter that puts the steers in (then calls yours, if any)."""
        yours = config.call_model_input_filter

        async def steered(data: CallModelData[Any]) -> ModelInputData:
            sent = data.model_data.input
            if self._ctx.steered:
                self.taken += [(len(sent), _user(text)) for text in await self._ctx.steers()]
            data = dataclasses.replace(data, model_data=dataclasses.replace(data.model_data, input=self.placed(sent)))
            if yours is None:
                return data.model_data
            filtered = yours(data)
            return await filtered if inspect.isawaitable(filtered) else filtered

        return dataclasses.replace(config, call_model_input_filter=steered)


def _user(text: str) -> TResponseInputItem:
    return {"role": "user", "content": text}


class Failure(NamedTuple):
    error: str
    denied: bool


def _telling_failures(config: RunConfig, failed: dict[str, Failure]) -> RunConfig:
    """`config`, with a tool error formatter that records each failed call (then asks yours, if
    any, what to tell the model)."""
    yours = config.tool_error_formatter

    async def formatter(args: ToolErrorFormatterArgs[Any]) -> str | None:
        error = str(args.error) if args.error is not None else args.default_message
        failed[args.call_id] = Failure(error, denied=args.kind == "approval_rejected")
        told = yours(args) if yours is not None else None
        return await told if inspect.isawaitable(told) else told

    return dataclasses.replace(config, tool_error_formatter=formatter)


class Subagents:
    """The agents-as-tools of one tokentail run that stream to it (`subagent_events`): each nested run
    a child of the run, by the id of the tool call it runs in."""

    def __init__(self, ctx: RunContext, failed: dict[str, "Failure"]) -> None:
        self._ctx = ctx
        self._failed = failed
        self.label = ""  # the run's agent now (a handoff changes it)
        self.started: set[str] = set()  # the run's tool calls shown started
        self.open: dict[str, InlineChild] = {}  # by call id

    async def event(self, payload: AgentToolStreamEvent) -> None:
        call, agent = payload["tool_call"], payload["agent"]
        if call is None:  # (the SDK gives none outside a model's tool call: nothing to show it in)
            return
        child = self.open.get(call.call_id)
        if child is None:
            # The run's stream may not have shown the call yet (it comes through the SDK's queue): first it.
            arguments = tool_arguments(call)
            await self.tool_started(self._ctx, call.call_id, call.name, arguments, self.label)
            text = arguments.get("input")
            given = text if isinstance(text, str) else json.dumps(arguments, ensure_ascii=False)
            child = self.open[call.call_id] = await self._ctx.subagent(agent.name, call_id=call.call_id, input=given)
        event = payload["event"]
        if not isinstance(event, AgentUpdatedStreamEvent):  # (a handoff inside it: the label says so)
            await _emit(child, event, agent.name, self._failed, None)

    async def tool_started(
        self, streams: EventSink, call_id: str, name: str, arguments: dict[str, Any], label: str
    ) -> None:
        if call_id not in self.started:
            self.started.add(call_id)
            await streams.tool_started(call_id, name, arguments, agent=label)

    async def end(self, call_id: str, output: Any, failure: "Failure | None") -> None:
        """The call's output came: its child, if it has one, ends (before the run takes the output)."""
        if (child := self.open.pop(call_id, None)) is None:
            return
        if failure is not None:
            await child.fail(failure.error)
        else:
            await child.end(output if isinstance(output, str) else json.dumps(as_json(output), ensure_ascii=False))

    async def end_open(self, error: BaseException) -> None:
        """The run stopped with children open: they end with it (a cancel, or a failure)."""
        for call_id in list(self.open):
            child = self.open.pop(call_id)
            try:
                await (child.cancel("cancelled") if not isinstance(error, Exception) else child.fail(error))
            except BaseException:  # (the writer may be the failure: the run's end tells clients)
                logger.debug("run %s: child %s not ended", self._ctx.run_id, child.run_id, exc_info=True)


_SUBAGENTS: ContextVar[Subagents | None] = ContextVar("tokentail_openai_subagents", default=None)


async def subagent_events(event: AgentToolStreamEvent) -> None:
    """`Agent.as_tool(..., on_stream=subagent_events)`: the nested agent's run streams into the tokentail
    run as a child run (outside one, nothing)."""
    if (subagents := _SUBAGENTS.get()) is not None:
        await subagents.event(event)


async def _emit(
    ctx: EventSink,
    event: RawResponsesStreamEvent | RunItemStreamEvent,
    label: str,
    failed: dict[str, Failure],
    subagents: Subagents | None,
) -> None:
    if isinstance(event, RawResponsesStreamEvent):
        if event.data.type == TEXT_DELTA:
            await ctx.delta(event.data.delta, agent=label)
        elif event.data.type in REASONING_DELTAS:
            await ctx.reasoning(getattr(event.data, "delta", ""), agent=label)
    elif isinstance(event.item, ToolCallItem):  # tool_called
        item = event.item
        call_id = item.call_id or f"call_{id(item.raw_item)}"
        arguments = tool_arguments(item.raw_item)
        if subagents is not None:  # (the run's own: shown once, whether its child came first or not)
            await subagents.tool_started(ctx, call_id, item.tool_name or "tool", arguments, label)
        else:
            await ctx.tool_started(call_id, item.tool_name or "tool", arguments, agent=label)
    elif isinstance(event.item, ToolCallOutputItem):  # tool_output
        call_id = _field(event.item.raw_item, "call_id") or _field(event.item.raw_item, "id")
        if call_id and subagents is not None:
            await subagents.end(call_id, event.item.output, failed.get(call_id))
        if call_id and (failure := failed.pop(call_id, None)) is not None:
            await ctx.tool_finished(call_id, error=failure.error, denied=failure.denied, agent=label)
        elif call_id:
            await ctx.tool_finished(call_id, result=as_json(event.item.output), agent=label)


def tool_arguments(raw_item: Any) -> dict[str, Any]:
    """A tool call's arguments as an object: function calls carry them as a JSON string; other tools
    (hosted, computer, shell) as fields of their own, or not at all."""
    arguments = _field(raw_item, "arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return {"arguments": arguments}
    if arguments is None:
        action = _field(raw_item, "action")
        return {"action": as_json(action)} if action is not None else {}
    return arguments if isinstance(arguments, dict) else {"arguments": as_json(arguments)}


def _field(raw_item: Any, name: str) -> Any:
    return raw_item.get(name) if isinstance(raw_item, dict) else getattr(raw_item, name, None)
