"""LangGraph graphs in a tokentail worker (`pip install tokentail[langgraph]`):

    from tokentail.frameworks.langgraph import langgraph_agent
    weather = langgraph_agent(graph.compile())  # a StateGraph of yours, unchanged

registered like any other agent (`TOKENTAIL_AGENTS`). The graph runs through `astream` with the
`messages`, `updates` and `custom` stream modes, subgraphs included:

- `messages`: the model's tokens, as they come: text (`message.delta`), reasoning, and usage; and
  the whole AI messages LangGraph sends there once only (a model that does not stream, a node that
  writes its own AI message);
- `updates`: what each node returned: an AI message's tool calls (`tool.started`, with their whole
  arguments) and the tool messages that answer them (`tool.completed`, or `tool.failed` for a
  tool message whose status is `error`);
- `custom`: what nodes write with `get_stream_writer()`: a string is a `status`, anything else a
  `data.custom` event.

A tool call left without its result when the graph stops (a tool that raised, which LangGraph's
ToolNode raises again by default, or a cancel) is told as `tool.failed`, as `ctx.tool` tells it.

A node that calls LangGraph's `interrupt(value)` asks a person through tokentail (`ctx.ask`): the run
waits with no worker held, and any worker goes on after the answer with `Command(resume=answer)`.
The graph runs with a checkpointer of the adapter's (an `InMemorySaver` per run, kept with the
question in Redis while the run waits), so a graph needs none of its own; the interrupted node runs
again from its start, as LangGraph does it. `value` says what to ask: a string is a text question; a
dict may give `prompt` (or `question`, `message`), `kind` (`approval`, `choice`, `text`, `json`),
`choices`, `schema` and `expires_in`; the interrupt's `response_schema` is the answer's schema;
anything else is shown as JSON and takes any JSON answer. Nodes that interrupt in the same step ask
at once (questions open together); the graph goes on with `Command(resume={interrupt id: answer})`.

A worker killed mid-run does not start the graph over: after each step of the graph (a node of the
top-level graph done), the adapter records its checkpoints with the run (`ctx.record_step`), and the
worker that takes the run over resumes the graph from the last of them, as LangGraph resumes a
thread: completed nodes do not run again, the node that was cut runs again from its start, and
clients drop what the run streamed since that checkpoint (`run.continued`). Killed before the first
node finished, the graph runs again from its input.

Steers (docs/steering.md) go into the graph's state when a pass of it ends: the adapter looks for
them then (one Redis round trip), and if one was sent, runs the graph on, on the same thread, with
`steer_input(texts)` as its input (by default `{"messages": [HumanMessage(text), ...]}`, which a
`messages` state with `add_messages` appends), until a pass ends with none sent. A graph is not cut
mid-pass. `steer_input=None` takes no steers (a graph whose state has no place for them): they fail
`not_supported`. The checkpoints the adapter records say how many times it took steers in, so a
worker that goes on from them does not give the graph those steers again.

With `subgraphs_as_children=True`, a subgraph (a compiled graph run as a node, or called inside one) is
a child run on the wire (docs/subagents-frameworks.md): each namespace LangGraph streams it under
(`("researcher:<task id>",)`, deeper for a subgraph's subgraphs) opens a child of the run (or of its
parent subgraph's child) with `run.spawned` (its node's name, and the namespace's last part as the call
id, which LangGraph derives from the checkpoint: the same when a worker goes on from it), its tokens,
tool calls, status and data with the child's `run_id`, and its `run.completed` when its node's update
comes in the parent graph (`run.failed` if the pass fails). Its events still carry its node's name as
their `agent` label. A subgraph's text is then the child's output, not the run's answer. Off by default
(a graph whose answer a subgraph writes, a supervisor's, keeps it as the run's answer): its events are
the run's own, labelled.

The graph's input is the session's turns and the run's input as `messages` (give `make_input` for a
graph whose state has another shape). Cancelling the run cancels the graph's task and, with it, the
model's HTTP stream.
"""

import asyncio
import base64
import json
import logging
from collections.abc import AsyncGenerator, Callable, Coroutine
from contextlib import aclosing
from typing import Any, cast

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel
from langgraph.types import Command, Interrupt

from tokentail.frameworks import as_json
from tokentail.frameworks.langchain import history, stream_chunk
from tokentail.worker.agent_errors import StepTooLarge
from tokentail.worker.event_sink import EventSink
from tokentail.worker.run.agents import continues
from tokentail.worker.run.children import InlineChild
from tokentail.worker.run.context import RunContext

TokentailAgent = Callable[[RunContext], Coroutine[Any, Any, None]]
logger = logging.getLogger(__name__)
CHECKPOINTS = "langgraph-checkpoints"  # the step the graph's checkpoints are recorded as, after each of its steps


def messages_input(ctx: RunContext) -> dict[str, Any]:
    return {"messages": [*history(ctx), HumanMessage(ctx.input)]}


def messages_steer(texts: list[str]) -> dict[str, Any]:
    return {"messages": [HumanMessage(text) for text in texts]}


def langgraph_agent(
    graph: Pregel[Any, Any, Any, Any],
    *,
    make_input: Callable[[RunContext], Any] = messages_input,
    steer_input: Callable[[list[str]], Any] | None = messages_steer,
    config: RunnableConfig | None = None,
    subgraphs_as_children: bool = False,
) -> TokentailAgent:
    """A tokentail agent that streams a run of the compiled `graph`; its subgraphs as child runs with
    `subgraphs_as_children=True` (else their events are the run's, labelled with their node)."""

    async def run(ctx: RunContext) -> None:
        saver = _Saver(ctx)
        graph_input: Any = make_input(ctx)
        if (state := ctx.resumed_state()) is not None:  # going on after the answers to its interrupts
            saver.load(state["checkpoints"])
            graph_input = Command(resume=await _answers(ctx, state.get("interrupts")))
        elif (checkpoints := ctx.this_attempt.recorded_step(CHECKPOINTS)) is not None:  # taken over: from the last one
            saver.load(checkpoints)
            graph_input = None  # LangGraph resumes the thread from its last checkpoint
            ctx.this_attempt.skip_recorded()  # clients have what came before it (and dropped what came after)
        configurable = {**(config or {}).get("configurable", {}), "thread_id": ctx.run_id}
        run_config = cast(RunnableConfig, {**(config or {}), "configurable": configurable})
        graph_with_saver = graph.copy(update={"checkpointer": saver.saver})
        while True:
            calls = _ToolCalls(ctx)
            children = _Subgraphs(ctx, subgraphs_as_children)
            interrupts = await _pass(ctx, graph_with_saver, graph_input, run_config, calls, saver, children)
            if interrupts:  # the graph waits for a person: so does the run
                await _ask(ctx, interrupts, calls, saver)
                return
            if steer_input is None or not (sent := await ctx.steers()):
                return
            saver.steers_taken += 1
            graph_input = steer_input(sent)  # the graph goes on, on its thread, with them

    return continues(run, redoes_after_last_step=True)


async def _ask(ctx: RunContext, interrupts: list[Interrupt], calls: "_ToolCalls", saver: "_Saver") -> None:
    """Ask a person what the graph's interrupts ask: one question, or one each asked at once (nodes
    that interrupt in parallel), answered in any order. Raises WaitingForInput."""
    state: dict[str, Any] = {"checkpoints": saver.dump()}
    if len(interrupts) == 1:
        await ctx.ask(**_question(interrupts[0], calls.open_call()), state=state)
        return
    state["interrupts"] = [interrupt.id for interrupt in interrupts]
    await asyncio.gather(*(ctx.ask(**_question(interrupt, None), state=state) for interrupt in interrupts))


async def _answers(ctx: RunContext, interrupts: list[str] | None) -> Any:
    """What resumes the graph: the recorded answer to its interrupt, or to each of its interrupts by id."""
    if interrupts is None:
        return await ctx.ask("")
    return {interrupt_id: await ctx.ask("") for interrupt_id in interrupts}


async def _pass(
    ctx: RunContext,
    graph: Pregel[Any, Any, Any, Any],
    graph_input: Any,
    run_config: RunnableConfig,
    calls: "_ToolCalls",
    saver: "_Saver",
    children: "_Subgraphs",
) -> list[Interrupt]:
    """Stream one pass of the graph, to its end or an interrupt (the interrupts, if any)."""
    stream = cast(  # an async generator: closed on the way out
        AsyncGenerator[tuple[tuple[str, ...], str, Any], None],
        graph.astream(graph_input, run_config, stream_mode=["messages", "updates", "custom"], subgraphs=True),
    )
    interrupts: list[Interrupt] = []
    try:
        # aclosing: should writing an event fail, the graph's tasks (and the model's stream) end too.
        async with aclosing(stream):
            async for namespace, mode, data in stream:
                if mode == "updates" and isinstance(data, dict) and "__interrupt__" in data:
                    interrupts.extend(data["__interrupt__"])
                await _event(await children.of(namespace), calls, _agent_of(namespace), mode, data)
                if mode == "updates" and isinstance(data, dict):
                    await children.ended(namespace, data)  # the nodes that ran subgraphs are done
                if mode == "updates" and not namespace and not interrupts:
                    await saver.record()
    except BaseException as exc:  # CancelledError too: the stream says how the open calls ended
        await calls.fail_open(exc)
        if isinstance(exc, Exception | asyncio.CancelledError):  # (not a question asked: they go on then)
            await children.fail_open(exc)
        raise
    if not interrupts:  # (one that waits on a person goes on when the run does)
        await children.end_open()
    return interrupts


class _Subgraphs:
    """The subgraphs streaming in one pass, each a child run, by its namespace (`of`)."""

    def __init__(self, ctx: RunContext, shown: bool) -> None:
        self._ctx = ctx
        self._shown = shown
        self._open: dict[tuple[str, ...], InlineChild] = {}

    async def of(self, namespace: tuple[str, ...]) -> EventSink:
        """Where the events of `namespace` go: the run's, or its subgraph's child."""
        if not namespace or not self._shown:
            return self._ctx
        return await self._child(namespace)

    async def _child(self, namespace: tuple[str, ...]) -> InlineChild:
        """The child run of the subgraph `namespace`, opened at its first event (a subgraph's subgraph's:
        a grandchild). Its own type, not an EventSink: it is ended here (`ended`, `end_open`)."""
        if (child := self._open.get(namespace)) is None:
            name, call_id = namespace[-1].partition(":")[0], namespace[-1]
            if len(namespace) == 1:
                child = await self._ctx.subagent(name, call_id=call_id)
            else:
                child = await (await self._child(namespace[:-1])).subagent(name, call_id=call_id)
            self._open[namespace] = child
        return child

    async def ended(self, namespace: tuple[str, ...], updates: dict[str, Any]) -> None:
        """Nodes of `namespace` told their update: the subgraphs they ran (and theirs) have ended."""
        done = [
            (inner, child)
            for inner, child in self._open.items()
            if inner[: len(namespace)] == namespace
            and len(inner) > len(namespace)
            and inner[len(namespace)].partition(":")[0] in updates
        ]
        for inner, child in sorted(done, key=lambda opened: -len(opened[0])):  # the deepest first
            del self._open[inner]
            await child.end()

    async def end_open(self) -> None:
        for inner in sorted(self._open, key=len, reverse=True):
            await self._open.pop(inner).end()

    async def fail_open(self, error: BaseException) -> None:
        for inner in sorted(self._open, key=len, reverse=True):
            child = self._open.pop(inner)
            await (child.cancel("cancelled") if isinstance(error, asyncio.CancelledError) else child.fail(error))


class _Saver:
    """The graph's checkpoints (an InMemorySaver per run), and how many times the run took steers in
    before its latest: kept together, with the run's record or its question."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self.saver = InMemorySaver()
        self.steers_taken = 0

    def dump(self) -> dict[str, Any]:
        return {**dump_saver(self.saver), "steers_taken": self.steers_taken}

    def load(self, data: dict[str, Any]) -> None:
        load_saver(self.saver, data)
        self.steers_taken = int(data.get("steers_taken", 0))
        self._ctx.this_attempt.skip_steers(self.steers_taken)  # the thread's state has them

    async def record(self) -> None:
        """A node of the graph is done: its writes are in the saver, kept for a worker that takes over."""
        try:
            await self._ctx.record_step(CHECKPOINTS, self.dump())
        except StepTooLarge:  # not kept: a takeover goes on from the last checkpoint that was
            logger.warning("run %s: the graph's checkpoints are too large to record", self._ctx.run_id)


async def _event(ctx: EventSink, calls: "_ToolCalls", agent: str | None, mode: str, data: Any) -> None:
    if mode == "messages":
        # Chunks as they stream, and the whole AI messages whose chunks LangGraph did not send.
        message, _metadata = data
        if isinstance(message, AIMessage):  # AIMessageChunk too
            await stream_chunk(ctx, message, agent)
    elif mode == "updates":
        await calls.update(data, agent, ctx)
    elif isinstance(data, str):
        await ctx.status(data, agent=agent)
    else:
        await ctx.data("custom", as_json(data), agent=agent)


def _question(interrupt: Interrupt, call_id: str | None) -> dict[str, Any]:
    """What `ctx.ask` asks for an interrupt's value."""
    value = interrupt.value
    schema = getattr(interrupt, "response_schema", None)
    if isinstance(value, str):
        question: dict[str, Any] = {"prompt": value}
    elif isinstance(value, dict) and any(key in value for key in ("prompt", "question", "message")):
        prompt = value.get("prompt") or value.get("question") or value.get("message")
        question = {"prompt": str(prompt), "kind": value.get("kind", "text")}
        question |= {key: value[key] for key in ("choices", "schema", "expires_in") if key in value}
    else:
        question = {"prompt": json.dumps(as_json(value), ensure_ascii=False), "kind": "json", "schema": {}}
    if isinstance(schema, dict):
        question |= {"kind": "json", "schema": schema}
    if question.get("kind") == "approval" and call_id is not None:
        question["call_id"] = call_id
    return question


def dump_saver(saver: InMemorySaver) -> dict[str, list[Any]]:
    """An InMemorySaver's checkpoints as JSON (the serializer's own bytes, base64), to keep in Redis."""
    return {
        "storage": [
            [thread, ns, checkpoint_id, _typed(checkpoint), _typed(metadata), parent]
            for thread, namespaces in saver.storage.items()
            for ns, checkpoints in namespaces.items()
            for checkpoint_id, (checkpoint, metadata, parent) in checkpoints.items()
        ],
        "writes": [
            [*outer, *inner, task_id, channel, _typed(value), path]
            for outer, writes in saver.writes.items()
            for inner, (task_id, channel, value, path) in writes.items()
        ],
        "blobs": [[*key, _typed(value)] for key, value in saver.blobs.items()],
    }


def load_saver(saver: InMemorySaver, data: dict[str, list[Any]]) -> None:
    for thread, ns, checkpoint_id, checkpoint, metadata, parent in data["storage"]:
        saver.storage[thread][ns][checkpoint_id] = (_untyped(checkpoint), _untyped(metadata), parent)
    for thread, ns, checkpoint_id, task, index, task_id, channel, value, path in data["writes"]:
        saver.writes[(thread, ns, checkpoint_id)][(task, index)] = (task_id, channel, _untyped(value), path)
    for thread, ns, channel, version, value in data["blobs"]:
        saver.blobs[(thread, ns, channel, version)] = _untyped(value)


def _typed(value: tuple[str, bytes]) -> list[str]:
    return [value[0], base64.b64encode(value[1]).decode()]


def _untyped(value: list[str]) -> tuple[str, bytes]:
    return value[0], base64.b64decode(value[1])


def _agent_of(namespace: tuple[str, ...]) -> str | None:
    """A subgraph's events: the node that runs it (`"researcher:<task id>"` -> `researcher`)."""
    return namespace[-1].partition(":")[0] if namespace else None


class _ToolCalls:
    """Tool calls and their results, from the nodes' updates. A subgraph's messages come again in
    its parent's update (the subgraph's node returns them): each call is told once."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._seen: set[tuple[str, str]] = set()  # (call id, "started" | "finished")
        self._open: dict[str, tuple[str | None, EventSink]] = {}  # started, not finished: call id -> agent label, where

    async def update(self, updates: Any, agent: str | None, streams: EventSink) -> None:
        if not isinstance(updates, dict):
            return
        for update in updates.values():
            messages = update.get("messages", []) if isinstance(update, dict) else []
            for message in messages if isinstance(messages, list) else [messages]:
                await self._message(message, agent, streams)

    async def _message(self, message: Any, agent: str | None, streams: EventSink) -> None:
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                call_id = call["id"] or call["name"]
                if self._first(call_id, "started"):
                    self._open[call_id] = (agent, streams)
                    await streams.tool_started(call_id, call["name"], call["args"], agent=agent)
        elif isinstance(message, ToolMessage) and self._first(message.tool_call_id, "finished"):
            # Ended where it started (a subgraph's call comes again in its parent's update: told once).
            agent, streams = self._open.pop(message.tool_call_id, (agent, streams))
            if message.status == "error":
                await streams.tool_finished(message.tool_call_id, error=str(message.content), agent=agent)
            else:
                await streams.tool_finished(message.tool_call_id, result=as_json(message.content), agent=agent)

    def open_call(self) -> str | None:
        """The one call started and not answered, if one: the call an interrupt in a tool is about."""
        return next(iter(self._open)) if len(self._open) == 1 else None

    async def fail_open(self, error: BaseException) -> None:
        """The calls the graph started and never answered, failed with what stopped it."""
        open_calls, self._open = self._open, {}
        for call_id, (agent, streams) in open_calls.items():
            await streams.tool_finished(call_id, error=error, agent=agent)

    def _first(self, call_id: str, what: str) -> bool:
        if (call_id, what) in self._seen:
            return False
        self._seen.add((call_id, what))
        return True
