"""The loop of a model-driven agent: stream the model's answer; if it calls tools, run them, show
their progress, feed the results back, and ask again, until it answers without tools.

Each model turn that called tools, and each tool call's result, is a step of the run
(`RunContext.step`): recorded once, replayed when the run goes on, after a takeover or after the
answer to a question. So a run that goes on asks the model only for the turn a crash cut
(continuing its text where the provider can, worker/run/recovery/takeover.py) and runs a tool only if
its result was not recorded; a tool cut mid-call runs again with the same call id, which it can take
as an idempotency key (a `call_id` parameter). A tool that needs approval runs once a person
approves the call (`ctx.ask`, kind `approval`); the run waits without a worker meanwhile.

Steers (input sent while the run works: docs/steering.md) are taken in at the loop's boundaries:
before its first model request (if one came before it), after a turn's tool results, at the end of a
turn that called none, or at a safe point of its text,
where the model's stream is cut and what was shown is kept as the turn. The next model request
carries each steer as a user message, once; a turn that steers followed is recorded first, so an
attempt that goes on replays it, then the steers taken after it.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, replace
from typing import Any, Protocol

from pydantic import ValidationError

from tokentail.shared.plumbing import tracing
from tokentail.shared.vocabulary.params import RunParams
from tokentail.shared.vocabulary.records import STEERED_APART
from tokentail.worker import metrics
from tokentail.worker.agent_errors import (
    AgentError,
    ChildFailed,
    SpawnRefused,
    StepTooLarge,
    ToolError,
    WaitingForChildren,
    WaitingForInput,
)
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
from tokentail.worker.run import traces
from tokentail.worker.run.agents import Agent
from tokentail.worker.run.context import RunContext
from tokentail.worker.run.recovery.takeover import TURN_STEP
from tokentail.worker.run.retry import RetryPolicy, stream_with_retries
from tokentail.worker.tools import Tool, ToolSpec
from tokentail.worker.writes.steer_inbox import SteerInbox

logger = logging.getLogger(__name__)

# Where a model's text may be cut for a steer: before a piece that starts with a space, or after a
# punctuation mark, so no word is cut in two; a model that gives no such point for this many
# characters after the steer came is cut where it is.
SAFE_POINT_END = (".", ",", ";", ":", "!", "?", ")")
CUT_AFTER_CHARS = 200


class SteeredLease(Protocol):
    """What the loop asks of its run's lease (worker/writes/run_writes.py's `RunLease`): whether a steer was
    sent (`inbox.sent`, read per token), and whether steers wait, where that would cut the model's text."""

    @property
    def inbox(self) -> SteerInbox: ...

    async def steers_wait(self) -> bool: ...


def first_messages(agent: Agent, context: RunContext) -> list[Message]:
    instructions = [text for text in (agent.system_prompt, context.instructions) if text]
    messages = [Message("system", "\n\n".join(instructions))] if instructions else []
    # Empty turns (a run that ended without text) are left out: some APIs refuse empty content.
    messages += [Message(turn.role, turn.content) for turn in context.history if turn.content]
    messages.append(Message("user", context.input))
    return messages


async def run_model_agent(
    agent: Agent,
    context: RunContext,
    lease: SteeredLease,
    provider: Provider,
    model: str,
    policy: RetryPolicy,
    tool_timeout: float,
) -> None:
    """Run `agent` in `context` on `provider`'s `model`; `lease`: the run's (worker/run/job.py hands it
    over), which says when a steer would cut the model's text."""
    tools = {t.name: t for t in agent.tools}
    specs = [*(t.spec for t in agent.tools), *map(child_spec, agent.agents)]
    messages = first_messages(agent, context)
    try:
        params = RunParams.model_validate(context.params)
    except ValidationError as exc:  # a run recorded before params were checked at the gateway
        raise InvalidRequest(f"invalid params: {exc}") from None

    async def on_retry(error: ProviderError, delay: float) -> None:
        metrics.PROVIDER_ERRORS.labels(provider.provider, error.kind).inc()
        await context.status(f"{error} Retrying in {delay:.1f} s.")

    # Steers that came before its first model request (sent while it was queued, or waited for an answer).
    messages += [Message("user", steer.input) for steer in await context.this_attempt.take_steers(only_if_told=True)]
    spent = 0  # the agent's steps: its turns, but for those a steer cut short (the run's steers are bounded)
    while spent < agent.max_steps:
        request = ModelRequest(model, messages, specs, params)
        turn, unrecorded = await _turn(context, lease, provider, request, policy, on_retry)
        messages.append(turn)
        if turn.tool_calls:
            calls, decisions = list(turn.tool_calls), dict[str, bool]()
            await _approve(context, tools, calls, decisions)
            # Parallel calls of one turn run together; their events interleave, each with its call_id.
            results = await asyncio.gather(
                *(
                    _run_child(context, call)
                    if call.name in agent.agents
                    else _run_tool(context, tools, call, tool_timeout, decisions.get(call.call_id))
                    for call in calls
                )
            )
            for call, (content, failed) in zip(calls, results, strict=True):
                messages.append(Message("tool", content, call_id=call.call_id, is_error=failed))
        steers = await _steers(context, unrecorded)
        if not steers and not turn.tool_calls:
            return
        spent += bool(turn.tool_calls)
        if steers and turn.content and not turn.tool_calls:
            await context.delta(STEERED_APART)
        messages += [Message("user", text) for text in steers]
    raise AgentError(f"agent {agent.name!r} did not answer within {agent.max_steps} steps")


async def _steers(context: RunContext, unrecorded: tuple[str, dict[str, Any]] | None) -> list[str]:
    """The steers sent since the last boundary, taken in now. `unrecorded`: the turn just made, as its
    step (key, value), when it is not recorded: recorded first if a steer is known to wait (else
    right after one is found), so that an attempt that goes on replays the turn, then the steers."""
    if unrecorded is not None and context.steered:
        await context.record_step(*unrecorded)
        unrecorded = None
    steers = await context.steers()
    if steers and unrecorded is not None:
        await context.record_step(*unrecorded)
    return steers


async def _turn(
    context: RunContext,
    lease: SteeredLease,
    provider: Provider,
    request: ModelRequest,
    policy: RetryPolicy,
    on_retry: Callable[[ProviderError, float], Awaitable[None]],
) -> tuple[Message, tuple[str, dict[str, Any]] | None]:
    """One model turn: replayed from the record, or streamed (continuing the text clients have of
    it, when the provider can). A turn that called tools is recorded; any other is returned with its
    step (key, value), for the caller to record if steers follow it."""
    attempt = context.this_attempt
    key = attempt.step_key(TURN_STEP)
    if (recorded := attempt.recorded_step(key)) is not None:
        turn = _message(recorded["message"])
        attempt.replayed(turn.content, recorded["reasoning_chars"])  # the stream has them
        attempt.traced_replay(**{"tokentail.step.key": key})
        return turn, None  # (its usage counts for the attempt that made it: worker/run/usage.py)
    prefix = context.resume_text() if provider.continues else ""
    progress = _Progress()

    async def model(continue_text: str) -> tuple[Message, int]:
        chunks = stream_with_retries(provider, replace(request, continue_text=continue_text), policy, on_retry)
        return await _model_turn(context, lease, chunks, continue_text, progress)

    try:
        turn, reasoning_chars = await model(prefix)
    except ProviderError as exc:
        # A model that refuses to continue an answer (Anthropic's newest refuse a prefill with a
        # 400) before it said anything: the turn starts over, and clients drop what they had of it.
        if not prefix or progress.streamed or exc.kind != "invalid_request":
            raise
        await attempt.restart_resumed_text(prefix)
        turn, reasoning_chars = await model("")
    step = {"message": asdict(turn), "reasoning_chars": reasoning_chars}
    if not turn.tool_calls:
        return turn, (key, step)
    await context.record_step(key, step)
    return turn, None


class _Progress:
    """Whether the model's stream gave anything yet: a turn that fails after that cannot start over."""

    __slots__ = ("streamed",)

    def __init__(self) -> None:
        self.streamed = False


async def _model_turn(
    context: RunContext, lease: SteeredLease, chunks: AsyncIterator[Chunk], prefix: str, progress: _Progress
) -> tuple[Message, int]:
    """Stream one answer of the model to the run, after `prefix` (what clients have of it); what it
    said, as the assistant's message, and how much reasoning it streamed. A steer sent meanwhile cuts
    the stream at the next safe point of its text (`_SteerCut`), unless it called a tool: what was
    shown is the turn. (`progress` is marked here, not by a generator around `chunks`, which would be
    one more step of every token.)"""
    text: list[str] = [prefix]
    reasoning_chars = 0
    calls: list[ToolCall] = []
    thinking: list[ThinkingBlock] = []
    cut, steered = _SteerCut(prefix), lease.inbox.sent  # (read per token: no lookups)
    async for chunk in chunks:
        progress.streamed = True
        if isinstance(chunk, TextDelta):
            if steered.is_set() and not calls and cut.before(chunk.text):
                if await lease.steers_wait():
                    with contextlib.suppress(Exception):  # the model's stream, closed early: its errors are moot
                        await chunks.aclose()  # type: ignore[attr-defined]
                    break
                cut.told_late()
            text.append(chunk.text)
            cut.shown(chunk.text)
            await context.delta(chunk.text)
        elif isinstance(chunk, ReasoningDelta):
            reasoning_chars += len(chunk.text)
            await context.reasoning(chunk.text)
        elif isinstance(chunk, ThinkingBlock):
            thinking.append(chunk)
        elif isinstance(chunk, ToolCall):
            calls.append(chunk)
        elif isinstance(chunk, Usage):
            context.add_usage(chunk.input_tokens, chunk.output_tokens)
    return Message("assistant", "".join(text), tool_calls=tuple(calls), thinking=tuple(thinking)), reasoning_chars


class _SteerCut:
    """Where a turn's text may be cut for a steer: before a piece that starts with a space, after a
    punctuation mark (SAFE_POINT_END), or CUT_AFTER_CHARS after the steer was seen, wherever it is."""

    __slots__ = ("_last", "_chars", "_seen_at")

    def __init__(self, prefix: str) -> None:
        self._last = prefix[-1:]  # the last character shown
        self._chars = len(prefix)
        self._seen_at: int | None = None  # the text's length when the steer was seen

    def shown(self, text: str) -> None:
        if text:
            self._last = text[-1]
            self._chars += len(text)

    def told_late(self) -> None:
        """The word of a steer was stale (none waits): the next one counts its characters afresh."""
        self._seen_at = None

    def before(self, text: str) -> bool:
        """Whether to cut before `text`, a steer having been sent."""
        if self._seen_at is None:
            self._seen_at = self._chars
        if not self._chars:
            return False  # nothing shown yet: the turn would be empty
        safe = text[:1].isspace() or self._last.isspace() or self._last in SAFE_POINT_END
        return safe or self._chars - self._seen_at >= CUT_AFTER_CHARS


async def _approve(
    context: RunContext, tools: dict[str, Tool], calls: list[ToolCall], decisions: dict[str, bool]
) -> None:
    """Ask a person about each call of a tool that needs approval, all at once (each its own question,
    answered in any order), recording the decisions; a call waiting for its answer is shown started.
    A run that goes on after the answers replays up to here, and each `ask` answered returns its answer."""
    asking = [
        call
        for call in calls
        if call.name in tools
        and tools[call.name].needs_approval
        # (one that ran, after its answer: the replay has its result)
        and context.this_attempt.recorded_step(_tool_step(call)) is None
    ]
    for call in asking:
        await context.tool_started(call.call_id, call.name, call.arguments)
    answers = await asyncio.gather(
        *(
            context.ask(
                f"Run {call.name} {json.dumps(call.arguments, ensure_ascii=False)}?",
                kind="approval",
                call_id=call.call_id,
            )
            for call in asking
        )
    )
    decisions.update((call.call_id, bool(answer["approved"])) for call, answer in zip(asking, answers, strict=True))


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


def _tool_step(call: ToolCall) -> str:
    return f"tool:{call.call_id}"


async def _run_tool(
    context: RunContext, tools: dict[str, Tool], call: ToolCall, time_limit: float, approved: bool | None
) -> tuple[str, bool]:
    """Run one call with its events, or replay its recorded result; returns what the model is told,
    and whether it failed. `approved`: a person's decision on a call that needed one (its start is
    shown already). The result is recorded before the call is shown finished: a crash in between
    replays it, never runs it again."""
    if (recorded := context.this_attempt.recorded_step(_tool_step(call))) is not None:
        # Each shown once: see worker/run/recovery/replay.py.
        context.this_attempt.traced_replay(**{"gen_ai.tool.name": call.name, "gen_ai.tool.call.id": call.call_id})
        await context.tool_started(call.call_id, call.name, call.arguments)
        outcome = {key: recorded.get(key) for key in ("result", "error")}
        await context.tool_finished(call.call_id, **outcome, denied=recorded.get("denied", False))
        return recorded["content"], recorded["failed"]
    if approved is None:
        await context.tool_started(call.call_id, call.name, call.arguments)
    try:
        if approved is False:
            raise ToolError("the user did not approve this call")
        if call.invalid_arguments is not None:
            raise ToolError(f"arguments are not a JSON object: {call.invalid_arguments[:200]!r}")
        if call.name not in tools:
            raise ToolError(f"there is no tool {call.name!r}; available: {', '.join(sorted(tools)) or 'none'}")
        result = _jsonable(await _execute(tools[call.name], call, time_limit, context))
    except ToolError as exc:
        denied = approved is False
        error = "a person denied this call" if denied else str(exc)
        failure = {"content": f"error: {exc}", "failed": True, "error": error, "denied": denied}
        await context.record_step(_tool_step(call), failure)
        await context.tool_finished(call.call_id, error=error, denied=denied)
        return f"error: {exc}", True
    except (WaitingForInput, WaitingForChildren):
        raise  # not an end: the tool asked (its `ctx`), and the call goes on when the run does
    except BaseException as exc:  # cancelled, or the worker stops: the call ends unrecorded
        await context.tool_finished(call.call_id, error=exc)
        raise
    content = json.dumps(result, ensure_ascii=False)
    try:
        await context.record_step(_tool_step(call), {"content": content, "failed": False, "result": result})
    except StepTooLarge:  # not kept: a takeover before the run ends would run this call again
        logger.warning("a result of %s (call %s) is too large to record: not replayed", call.name, call.call_id)
    await context.tool_finished(call.call_id, result=result)
    return content, False


def child_spec(agent: str) -> ToolSpec:
    """A catalog agent as the model is offered it: a tool that takes what to ask it."""
    return ToolSpec(
        name=agent,
        description=f"Ask the {agent} agent: it works on the input you give it, and its answer is the result.",
        parameters={
            "type": "object",
            "properties": {"input": {"type": "string", "description": f"what to ask the {agent} agent"}},
            "required": ["input"],
        },
    )


async def _run_child(context: RunContext, call: ToolCall) -> tuple[str, bool]:
    """A call of a catalog agent: a child run (its tool call is the spawn's, worker/run/children.py),
    the run waiting for it without a worker; its answer recorded as the call's step, as a tool's is."""
    if (recorded := context.this_attempt.recorded_step(_tool_step(call))) is not None:
        await context.tool_started(call.call_id, call.name, call.arguments)  # each shown once (replay.py)
        await context.tool_finished(call.call_id, **{key: recorded.get(key) for key in ("result", "error")})
        return recorded["content"], recorded["failed"]
    text = call.arguments.get("input") if isinstance(call.arguments, dict) else None
    try:
        result = await context.spawn(
            call.name, text if isinstance(text, str) else json.dumps(call.arguments), call_id=call.call_id
        )
    except (ChildFailed, SpawnRefused) as exc:
        await context.record_step(_tool_step(call), {"content": f"error: {exc}", "failed": True, "error": str(exc)})
        return f"error: {exc}", True
    content = json.dumps(result.output, ensure_ascii=False)
    await context.record_step(_tool_step(call), {"content": content, "failed": False, "result": result.output})
    return content, False


async def _execute(tool: Tool, call: ToolCall, time_limit: float, context: RunContext) -> Any:
    if not tracing.ON:
        return await tool.run(call.arguments, time_limit, call.call_id, context)
    with traces.executing_tool(call.name, call.call_id):
        return await tool.run(call.arguments, time_limit, call.call_id, context)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
