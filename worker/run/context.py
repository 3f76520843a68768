"""RunContext: what an agent sees while it runs, and how it streams.

Built-in agents and your own (`async def my_agent(ctx: RunContext) -> None`) use the same calls:

    await ctx.delta("Hello")                      # answer text, coalesced into message.delta events
    await ctx.reasoning("The user wants...")      # thinking text, apart from the answer (reasoning.delta)
    await ctx.status("Searching the docs...")     # a `status` event
    await ctx.data("chart", {"points": [1, 2]})   # a `data.chart` event: your own JSON, for your UI
    async with ctx.tool("search", {"q": "x"}) as call:   # tool.started ... tool.completed
        call.result = await search("x")                   # an exception here: tool.failed, then raised

A run can ask a person and wait for the answer, for minutes or days, with no worker held meanwhile:

    answer = await ctx.ask("Delete 3 files?", kind="approval")        # {"approved": bool, "reason"?: str}
    colour = await ctx.ask("Which colour?", kind="choice", choices=["red", "blue"])
    name = await ctx.ask("Your name?")                                # kind="text": a string
    form = await ctx.ask("Details", kind="json", schema={...})         # any JSON Schema
    a, b = await asyncio.gather(ctx.ask("Send?", kind="approval"), ctx.ask("Pay?", kind="approval"))

A code editor connected over ACP is asked the same way, its program answering (docs/acp.md):

    read = await ctx.client_request("fs/read_text_file", {"path": "/work/app.py"})  # {"content": ...}

Questions asked at once (concurrent calls) are open together, each its own `input.required`, answered
in any order. While it waits, the worker is free; the last answer (from any client, through any
gateway) queues the run again, and a worker runs the agent again from its start, with the run's
record: each `ask` answered before returns its answer at once, and what the record holds is not streamed again
(worker/run/recovery/replay.py). A worker that takes over a crashed run does the same (for your own
agent, when it is marked `@continues`). Work that must not be done twice goes in a step, recorded
once and replayed after:

    order = await ctx.step("fetch-order", fetch_order, order_id)    # its result is kept with the run
    prefix = ctx.resume_text()       # the answer text clients have and this attempt has not streamed

A run can start other agents of the catalog as child runs in its session, and wait for them the same
way, with no worker held (docs/subagents.md):

    result = await ctx.spawn("researcher", "What causes tides?")       # its answer: result.output
    async for event in ctx.spawn_stream("researcher", "..."):          # or follow it as it goes
        ...

A person may add input while the run works (a steer: `POST /v1/sessions/{id}/steer`; docs/steering.md).
An agent takes it in where it can, between its own steps, each steer once, also across a takeover:

    for text in await ctx.steers():               # [] when none was sent; each returned once
        messages.append({"role": "user", "content": text})
    if ctx.steered: ...                           # one was sent since: stop streaming at a safe point

An agent that never calls `ctx.steers()` takes no steers: those sent to its run fail `not_supported`.

Frameworks report a tool's start and its end as two callbacks, not one scope: for them,
`ctx.tool_started(call_id, name, arguments)` and later `ctx.tool_finished(call_id, result=...)` (or
`error=...`). Every call takes `agent=`: the sub-agent or branch the event comes from, when several
stream into one run side by side. A sub-agent that runs inside the agent's own code (a framework's
agent-as-tool, subgraph, delegate) can show as a child run instead, durable only as this run's record
is (docs/subagents-frameworks.md):

    async with await ctx.subagent("researcher", call_id="call_7", input="x") as child:
        await child.delta("...")                   # the child's text: its output, not this run's

That is all an agent needs. tokentail's own code (the run, the built-in loop, the framework adapters)
reaches the attempt's internals through `ctx.this_attempt` (worker/run/attempt.py), which is not part of
this API.
"""

import asyncio
import inspect
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Any, cast

from tokentail.shared.features.agent_catalog import arguments_of
from tokentail.shared.plumbing import tracing
from tokentail.shared.vocabulary.events import (
    DATA_NAME,
    ClientRequest,
    CustomData,
    InputKind,
    Status,
    ToolStarted,
)
from tokentail.shared.vocabulary.records import OnExpiry, RunRecord, Turn
from tokentail.shared.vocabulary.run_log import RunLog
from tokentail.worker.agent_errors import ToolError, WaitingForChildren, WaitingForInput
from tokentail.worker.run import traces
from tokentail.worker.run.attempt import Attempt
from tokentail.worker.run.children import (
    ChildEvent,
    Children,
    ChildResult,
    InlineChild,
    InlineChildren,
)
from tokentail.worker.run.questions import Batch, Questions, client_prompt
from tokentail.worker.run.usage import UsageMeter
from tokentail.worker.writes.writer import EventWriter, tool_end

CLIENT_SECONDS = 60.0  # how long a client request (`client_request`) waits for the client's program, by default

Waiting = WaitingForInput | WaitingForChildren  # what ends an attempt while its run waits without a worker


def waiting_in(group: BaseExceptionGroup[BaseException]) -> Waiting | None:
    """The questions a TaskGroup's tasks asked at once (or the children they spawned), when that is all
    the group holds besides the cancellations it made (its other tasks, stopped as the first one's
    `ask` or `spawn` ended them)."""
    waiting, rest = group.split((WaitingForInput, WaitingForChildren))
    if waiting is None or (rest is not None and rest.split(asyncio.CancelledError)[1] is not None):
        return None
    first: BaseException = waiting
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return cast(Waiting, first)


def _waiting_for_children(waits: list[str | None]) -> WaitingForChildren:
    """Children spawned at once: the run waits for those going, or for the first of them to end if
    some could not start yet (None: they start when it goes on)."""
    going = [child_id for child_id in waits if child_id is not None]
    return WaitingForChildren(going, wake_on_first=len(going) < len(waits))


async def _called(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    value = fn(*args, **kwargs)
    return await value if inspect.isawaitable(value) else value


class ToolScope:
    """One tool call as the stream shows it (and, traced, as an `execute_tool` span current around
    the block); set `result` before the block ends."""

    def __init__(
        self, context: "RunContext", call_id: str, name: str, arguments: dict[str, Any], agent: str | None
    ) -> None:
        self._context = context
        self.call_id = call_id
        self.name = name
        self.arguments = arguments
        self.agent = agent
        self.result: Any = None
        self._span: AbstractContextManager[Any] = nullcontext()

    async def __aenter__(self) -> "ToolScope":
        await self._context.tool_started(self.call_id, self.name, self.arguments, agent=self.agent)
        if tracing.ON:
            self._span = traces.executing_tool(self.name, self.call_id)
        self._span.__enter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, WaitingForInput | WaitingForChildren):
            self._span.__exit__(None, None, None)  # not a failure: the call goes on when the run does
            return  # and ends then
        self._span.__exit__(exc_type, exc, tb)
        if exc is None:
            await self._context.tool_finished(self.call_id, result=self.result, agent=self.agent)
        else:
            await self._context.tool_finished(self.call_id, error=exc, agent=self.agent)


class RunContext:
    def __init__(
        self,
        writer: EventWriter,
        session_id: str,
        run: RunRecord,
        history: list[Turn],
        meter: UsageMeter | None = None,
        log: RunLog | None = None,
        children: Children | None = None,
    ) -> None:
        """`log`: the run's record, when this attempt goes on from it (worker/run/recovery/)."""
        self.session_id = session_id
        self.run_id = run.run_id
        self.input = run.input
        self.params = run.params
        self.instructions = run.instructions  # a fork's, for the model beside the agent's system prompt
        self.attempt = run.attempt
        self.history = history  # earlier completed turns of this session
        meter = meter if meter is not None else UsageMeter(run, writer)
        self._this_attempt = Attempt(writer, run, meter, log)
        self._writer = writer  # the attempt's own, kept here for the per-token path
        self._meter = meter
        self._questions = Questions(writer, run, self._this_attempt)
        self._children = children or Children.none()
        # No reference back to this context or its children from what they hold (the children's bound
        # methods would be one): a run's state is freed by reference counting as the run ends, not left
        # to the collector of cycles, whose collections at thousands of runs stopped the loop for seconds.
        self._children.waits = Batch(writer, _waiting_for_children, self._children.settled.wait)
        self._tool_calls = 0
        self._inline = InlineChildren(writer, run, meter.add)

    @property
    def arguments(self) -> dict[str, Any]:
        """The arguments of the call that queued the run (an MCP tool call, an A2A data part), for an
        agent that declares an `input_schema` (`describe`): the JSON object its input is. An input
        that is not a JSON object (text, from any client) is `{"input": <the text>}`."""
        return arguments_of(self.input)

    @property
    def this_attempt(self) -> Attempt:
        """Not the agent API: the attempt's internals (`attempt` is its number), for tokentail's own
        run, built-in loop and framework adapters (worker/run/attempt.py). They may change in any release."""
        return self._this_attempt

    async def step(self, name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)` (awaited if it returns an awaitable), done once for the run: its
        result (JSON) is recorded with the run, and an attempt that goes on after a takeover or an
        answer gets the recorded result back without calling `fn`. Steps are told apart by `name`
        and by their order among the steps of that name. A step that raised is not recorded: it is
        done again."""
        key = self._this_attempt.step_key(name)
        if (recorded := self._this_attempt.recorded_step(key)) is not None:
            self._this_attempt.traced_replay(**{"tokentail.step.key": key})
            return recorded
        if tracing.ON:
            with traces.executing_tool(name, None) as span:
                span.set_attribute("tokentail.step.key", key)
                value = await _called(fn, *args, **kwargs)
        else:
            value = await _called(fn, *args, **kwargs)
        return await self._this_attempt.record_step(key, value)

    async def record_step(self, key: str, value: Any) -> Any:
        """Record `value` (JSON) as step `key`'s result, after what the run streamed before it, and return
        it as a replay would (through JSON): `step`'s, or an adapter's (LangGraph's checkpoints)."""
        return await self._this_attempt.record_step(key, value)

    @property
    def streamed_text(self) -> str:
        """The answer text the run's clients had when this attempt started ("" on a first attempt)."""
        return self._this_attempt.streamed_text

    def resume_text(self) -> str:
        """The answer text the run's clients have and this attempt has not streamed yet, counted as
        streamed now: give it to a model that continues a partial answer, and stream what follows."""
        return self._this_attempt.resume_text()

    async def ask(
        self,
        prompt: str,
        *,
        kind: InputKind = "text",
        choices: list[str] | None = None,
        schema: dict[str, Any] | None = None,
        expires_in: float | None = None,
        on_expiry: OnExpiry = "fail",
        default: Any = None,
        call_id: str | None = None,
        state: Any = None,
    ) -> Any:
        """Ask a person and wait for the answer, which matches the kind's schema: `approval`
        ({"approved": bool, "reason"?: str}), `choice` (one of `choices`), `text` (a string) or
        `json` (`schema`). Unanswered after `expires_in` seconds, the run fails (`input_expired`), or
        with `on_expiry="default"` goes on with `default`. `call_id`: the tool call it approves.
        `state`: any JSON, returned by `resumed_state()` when the run goes on. Calls made at once
        (tasks of an `asyncio.gather` or a TaskGroup) ask their questions together: the run waits
        until each has its answer, given in any order."""
        return await self._questions.ask(
            prompt,
            kind=kind,
            choices=choices,
            schema=schema,
            expires_in=expires_in,
            on_expiry=on_expiry,
            default=default,
            call_id=call_id,
            state=state,
        )

    async def client_request(self, method: str, params: dict[str, Any], *, expires_in: float = CLIENT_SECONDS) -> Any:
        """Ask the client's own program (a code editor connected over ACP: `fs/read_text_file`,
        `fs/write_text_file`, `terminal/...`, docs/acp.md) and wait for its result with no worker held, as
        a question is waited for: the result, or `ToolError` when the client failed it or none served it
        within `expires_in` seconds (no editor connected, or one without that capability), or params past
        `CLIENT_PARAMS_BYTES` (a file's content: the question carries it, and the run's record keeps it)."""
        unanswered = f"no client served {method} within {expires_in:g} s (is an editor connected over ACP?)"
        answer = await self._questions.ask(
            client_prompt(method, params),  # (ToolError past CLIENT_PARAMS_BYTES)
            kind="json",
            choices=None,
            schema={"type": "object"},
            expires_in=expires_in,
            on_expiry="default",
            default={"error": unanswered},
            call_id=None,
            state=None,
            client=ClientRequest(method=method, params=params),
        )
        if isinstance(answer, dict) and isinstance(answer.get("error"), str):
            raise ToolError(f"{method}: {answer['error']}")
        return answer

    async def spawn(
        self, agent: str, input: str, *, call_id: str | None = None, name: str | None = None
    ) -> ChildResult:  # noqa: A002
        """Run catalog agent `agent` on `input` as a child run, shown as tool call `call_id` (`name`),
        and return its answer; this run waits for it without a worker (docs/subagents.md)."""
        call_id = self._children.call_id(call_id)
        async with self.tool(name or agent, {"input": input}, call_id) as call:
            result = await self._children.result(agent, input, call_id, name)
            call.result = result.output
        return result

    def spawn_stream(
        self, agent: str, input: str, *, call_id: str | None = None, name: str | None = None
    ) -> AsyncIterator[ChildEvent]:  # noqa: A002
        """As `spawn`, but this run follows the child as it goes (holding its worker): its events and its
        descendants' (`ChildEvent`), through its end; `ChildFailed` after them if it did not complete."""
        return self._children.stream(self.tool, agent, input, self._children.call_id(call_id), name)

    async def subagent(self, name: str, *, call_id: str, input: str = "") -> InlineChild:  # noqa: A002
        """Show a sub-agent running inside this agent's code (a framework's) as a child run, for call
        `call_id`: stream its events through what this returns (docs/subagents-frameworks.md)."""
        return await self._inline.open(self.run_id, name, call_id, input, None)

    async def steers(self) -> list[str]:
        """The input sent to this run while it runs (steers), in the order sent, taken in now: each
        is returned once, by the first call after it was stored (its `steer.applied`, the commit
        point). An attempt that goes on after a takeover or an answer gets, at each call, the steers
        that call took before, and no new ones until it has replayed its record."""
        return [steer.input for steer in await self._this_attempt.take_steers()]

    @property
    def steered(self) -> bool:
        """Whether a steer was sent since this agent last took steers in (as this worker was told: no
        Redis read): an agent streaming a long answer may stop at a safe point and call `steers()`."""
        return self._this_attempt.steers_sent

    def resumed_state(self) -> Any:
        """The `state` given with the last question answered, when the run goes on after it (else
        None). An agent that restores its work from it skips what came before: its next `ask` is
        that question again, and returns its answer (with questions asked at once, its next asks
        are those, in the order asked)."""
        return self._questions.resumed_state()

    async def delta(self, text: str, *, agent: str | None = None) -> None:
        self._meter.streamed(len(text))
        await self._writer.delta(text, agent)

    async def reasoning(self, text: str, *, agent: str | None = None) -> None:
        self._meter.streamed(len(text))
        await self._writer.reasoning(text, agent)

    async def status(self, text: str, *, agent: str | None = None) -> None:
        await self._writer.emit(Status(run_id=self.run_id, text=text, agent=agent))

    async def data(self, name: str, data: Any, *, agent: str | None = None) -> None:
        """A `data.<name>` event holding `data` (any JSON value); `name`: letters, digits, - and _."""
        if not re.match(DATA_NAME, name):
            raise ValueError(f"data event names are 1-64 letters, digits, '-' or '_', not {name!r}")
        await self._writer.emit(CustomData(run_id=self.run_id, name=name, data=data, agent=agent))

    def tool(
        self, name: str, arguments: dict[str, Any], call_id: str | None = None, *, agent: str | None = None
    ) -> ToolScope:
        # Numbered, not random: a run continued after an answer makes the same calls with the same ids.
        self._tool_calls += 1
        return ToolScope(self, call_id or f"call_{self.run_id[2:]}_{self._tool_calls}", name, arguments, agent)

    async def tool_started(
        self, call_id: str, name: str, arguments: dict[str, Any], *, agent: str | None = None
    ) -> None:
        self._this_attempt.open_calls[call_id] = (time.monotonic(), agent)
        await self._writer.emit(
            ToolStarted(run_id=self.run_id, call_id=call_id, name=name, arguments=arguments, agent=agent)
        )

    async def tool_finished(
        self,
        call_id: str,
        *,
        result: Any = None,
        error: str | BaseException | None = None,
        denied: bool = False,
        agent: str | None = None,
    ) -> None:
        """`tool.completed` with `result`, or `tool.failed` with `error` (`denied`: a person denied
        the call, which did not run); a call whose start this context did not see is reported with a
        duration of 0."""
        started, _ = self._this_attempt.open_calls.pop(call_id, (None, None))
        duration_ms = int((time.monotonic() - started) * 1000) if started is not None else 0
        await self._writer.emit(tool_end(self.run_id, call_id, result, error, denied, agent, duration_ms))

    def add_usage(self, input_tokens: int, output_tokens: int) -> None:
        """Report what a model call cost (tokens in, tokens out): counted for this attempt, recorded
        with the run as it comes, summed over the run's attempts at its end (worker/run/usage.py)."""
        self._meter.add(input_tokens, output_tokens)
