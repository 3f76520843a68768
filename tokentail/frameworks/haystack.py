"""Haystack agents and pipelines in a tokentail worker (`pip install tokentail[haystack]`).

    from tokentail.frameworks.haystack import from_agent, from_pipeline
    weather = from_agent(Agent(chat_generator=OpenAIChatGenerator(...), tools=[get_weather]))
    answer = from_pipeline(pipe, lambda ctx: {"prompt_builder": {"question": ctx.input}})

registered like any other agent (`TOKENTAIL_AGENTS='{"weather": "my_module:weather"}'`). An `Agent`
runs through `Agent.run_async(streaming_callback=...)`, a `Pipeline` through `Pipeline.stream(...)`
(its async run with a streaming callback on every streaming component: a generator, or a custom
component with a `run_async` that takes a `streaming_callback`); a pipeline that streamed no text
answers with the text output of its result (`pipeline_answer`, whatever the output's name, or the
one `output=` names). Both are async, so a cancel
of the run cancels the chat generator's HTTP stream (Haystack closes it on cancellation).

Everything reaches tokentail as Haystack's `StreamingChunk`s, mapped one by one (`ChunkMapper`):
text -> `message.delta`, `reasoning` -> `reasoning.delta`, `ToolCallDelta`s assembled by index ->
`tool.started` once the model's message is complete (its arguments whole), `tool_call_result` (the
Agent's tool invoker streams one per call) -> `tool.completed` or `tool.failed`, and `meta["usage"]`
(the last chunk of an OpenAI stream, when asked with `stream_options.include_usage`) -> usage.

Tool calls a person must approve go through Haystack's own confirmation hook, with `AskTokentail`
as the strategy: the run waits for the answer without a worker (`ctx.ask`), any client approves or
denies it, and any worker goes on:

    hook = ConfirmationHook({"delete_file": AskTokentail()})
    agent = Agent(chat_generator=..., tools=[delete_file], hooks={"before_tool": [hook]})
"""

import hashlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from haystack import Pipeline
from haystack.components.agents import Agent
from haystack.components.generators.chat import OpenAIChatGenerator
from haystack.dataclasses import ChatMessage, ChatRole, StreamingChunk, ToolCall
from haystack.hooks.human_in_the_loop import ToolExecutionDecision

from tokentail.frameworks import as_json
from tokentail.worker.run.context import RunContext

logger = logging.getLogger(__name__)

TokentailAgent = Callable[[RunContext], Awaitable[None]]

# OpenAI streams no usage unless asked; Haystack's OpenAIChatGenerator does not ask by itself.
INCLUDE_USAGE = {"stream_options": {"include_usage": True}}


def history(ctx: RunContext) -> list[ChatMessage]:
    """The session's earlier turns as Haystack chat messages (empty answers, of runs that failed or
    were cancelled before any text, are left out)."""
    return [
        ChatMessage.from_user(turn.content) if turn.role == "user" else ChatMessage.from_assistant(turn.content)
        for turn in ctx.history
        if turn.role == "user" or turn.content
    ]


def from_agent(agent: Agent) -> TokentailAgent:
    """A tokentail agent that runs `agent` on the session's earlier turns and the run's input."""

    async def run(ctx: RunContext) -> None:
        # The agent's own callback (or its generator's), a tutorial's print_streaming_chunk say, which
        # the run's would otherwise replace, still gets every chunk.
        mapper = ChunkMapper(
            ctx, also=agent.streaming_callback or getattr(agent.chat_generator, "streaming_callback", None)
        )
        await agent.run_async(
            history(ctx) + [ChatMessage.from_user(ctx.input)],
            # Its bound coroutine method: Haystack tells an async callback by inspect.iscoroutinefunction,
            # which the mapper object itself fails (it then logs that a sync callback may block the loop).
            streaming_callback=mapper.__call__,
            generation_kwargs=_usage_kwargs(agent.chat_generator),
            hook_context={HOOK_CONTEXT_KEY: ctx},  # for AskTokentail
        )
        await mapper.flush()

    return run


def from_pipeline(
    pipeline: Pipeline, inputs: Callable[[RunContext], dict[str, Any]], *, output: str | None = None
) -> TokentailAgent:
    """A tokentail agent that runs `pipeline` on `inputs(ctx)` (its `data`: build it from
    `ctx.input`, `history(ctx)`, `ctx.params`) and streams every streaming component's chunks.

    If none streamed any text (a component that calls its generator whole, as the tutorials' custom
    components do), the answer is the text of the pipeline's result: the output `output` names
    (`"component.output"`), else its one text output whatever its name (a `str`, a `ChatMessage`, or
    a list of either, whose last is the answer). Several with different texts: ValueError, which
    asks for `output`. Ask the pipeline's OpenAI generators for usage yourself
    (`generation_kwargs=INCLUDE_USAGE`)."""
    if output is not None and output.count(".") != 1:
        raise ValueError(f"output names one output as 'component.output', not {output!r}")

    async def run(ctx: RunContext) -> None:
        mapper = ChunkMapper(ctx)
        # Abandoning the handle (a cancel) cancels the pipeline's task, and with it the model's stream.
        handle = pipeline.stream(inputs(ctx))
        async for chunk in handle:
            await mapper(chunk)
        await mapper.flush()
        if not mapper.streamed_text and (reply := pipeline_answer(handle.result, output)):
            await ctx.delta(reply)

    return run


def pipeline_answer(result: dict[str, Any], output: str | None = None) -> str:
    """The answer text in a pipeline's result (`{component: {output: value}}`): see `from_pipeline`."""
    texts = {
        f"{component}.{name}": text
        for component, outputs in result.items()
        if isinstance(outputs, dict)
        for name, value in outputs.items()
        if (text := _text(value)) is not None
    }
    if output is not None:
        component, _, name = output.partition(".")
        if name not in (result.get(component) or {}):
            raise ValueError(f"the pipeline's result has no output {output}; its text outputs: {_listed(texts)}")
        return _text(result[component][name]) or ""
    answers = {text for text in texts.values() if text}
    if len(answers) > 1:
        named = [name for name, text in texts.items() if text]
        raise ValueError(
            f"the pipeline's result has several text outputs: {', '.join(named)}; name the answer with "
            f"from_pipeline(..., output={named[-1]!r})"
        )
    if not answers:
        logger.warning("the pipeline streamed no text, and its result has no text output: %s", _listed(result))
    return answers.pop() if answers else ""


def _text(value: Any) -> str | None:
    """The text of an output value that is text (None if it is not): a string, a chat message's text,
    or the last of a list of either (an assistant's, in a list of chat messages)."""
    if isinstance(value, str):
        return value
    if isinstance(value, ChatMessage):
        return value.text or ""
    if isinstance(value, list) and value and all(isinstance(item, str | ChatMessage) for item in value):
        said = [item for item in value if not isinstance(item, ChatMessage) or item.role == ChatRole.ASSISTANT]
        return _text((said or value)[-1])
    return None


def _listed(outputs: dict[str, Any]) -> str:
    return ", ".join(outputs) or "none"


HOOK_CONTEXT_KEY = "tokentail"


class AskTokentail:
    """A Haystack `ConfirmationStrategy` that asks through tokentail (`kind="approval"`, tied to the
    tool call): a denial, with the person's reason, is what the model is told instead of the tool's
    result, and the call is reported failed. `prompt` may use `{tool_name}` and `{arguments}`.

    The run waits without a worker; the answer runs the agent again from its start, on any worker,
    and this strategy returns the recorded answer when it is reached again (see `ctx.ask`): the
    model's calls before the question are made again, so give the agent a deterministic model
    (temperature 0) for its tool-calling steps."""

    def __init__(self, prompt: str = "Run {tool_name} with {arguments}?", expires_in: float | None = None) -> None:
        self.prompt = prompt
        self.expires_in = expires_in

    async def run_async(
        self,
        *,
        tool_name: str,
        tool_description: str,
        tool_params: dict[str, Any],
        tool_call_id: str | None = None,
        confirmation_strategy_context: dict[str, Any] | None = None,
    ) -> ToolExecutionDecision:
        ctx: RunContext | None = (confirmation_strategy_context or {}).get(HOOK_CONTEXT_KEY)
        if ctx is None:
            raise RuntimeError("AskTokentail asks through tokentail: run the agent with from_agent(...)")
        call_id = _call_id(ToolCall(tool_name, tool_params, tool_call_id))
        prompt = self.prompt.format(tool_name=tool_name, arguments=json.dumps(tool_params, ensure_ascii=False))
        answer = await ctx.ask(prompt, kind="approval", call_id=call_id, expires_in=self.expires_in)
        if answer["approved"]:
            return ToolExecutionDecision(tool_name, True, tool_call_id, final_tool_params=tool_params)
        reason = answer.get("reason")
        feedback = f"The user denied {tool_name}" + (f": {reason}" if reason else ".")
        await ctx.tool_finished(call_id, error=feedback, denied=True)  # Haystack does not stream a rejection
        return ToolExecutionDecision(tool_name, False, tool_call_id, feedback=feedback)

    def run(self, **kwargs: Any) -> ToolExecutionDecision:
        raise RuntimeError("AskTokentail is async: tokentail runs agents with Agent.run_async")

    def to_dict(self) -> dict[str, Any]:
        return {"type": f"{__name__}.AskTokentail", "init_parameters": vars(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AskTokentail":
        return cls(**data["init_parameters"])


def _usage_kwargs(generator: object) -> dict[str, Any] | None:
    """Ask an OpenAI generator (Azure's too) for usage, unless it was configured with its own
    `stream_options`; run-time generation_kwargs replace init-time ones key by key."""
    if isinstance(generator, OpenAIChatGenerator) and "stream_options" not in generator.generation_kwargs:
        return dict(INCLUDE_USAGE)
    return None


@dataclass
class _PendingCall:
    call_id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ChunkMapper:
    """Maps one run's StreamingChunks to tokentail events; it is the run's async streaming callback.

    A tool call streams as ToolCallDeltas (its id and name first, then argument fragments) keyed by
    index; it is reported when the message is complete (a chunk with a `finish_reason`), so that
    `tool.started` carries the whole arguments. A tool result whose call was never streamed (a
    generator that does not stream tool calls) is reported with its start just before it.
    """

    def __init__(self, ctx: RunContext, also: Callable[[StreamingChunk], Any] | None = None) -> None:
        self.ctx = ctx
        self.streamed_text = False
        self._also = also  # a callback of the user's, sync or async, given every chunk after the run
        self._pending: dict[int, _PendingCall] = {}
        self._started: set[str] = set()

    async def __call__(self, chunk: StreamingChunk) -> None:
        await self._map(chunk)
        if self._also is not None and inspect.isawaitable(given := self._also(chunk)):
            await given

    async def _map(self, chunk: StreamingChunk) -> None:
        if chunk.content:
            self.streamed_text = True
            await self.ctx.delta(chunk.content)
        if chunk.reasoning is not None and chunk.reasoning.reasoning_text:
            await self.ctx.reasoning(chunk.reasoning.reasoning_text)
        for delta in chunk.tool_calls or ():
            call = self._pending.setdefault(delta.index, _PendingCall())
            call.call_id = call.call_id or delta.id
            call.name = call.name or delta.tool_name or ""
            call.arguments.append(delta.arguments or "")
        if chunk.finish_reason is not None or chunk.tool_call_result is not None:
            await self.flush()
        if (result := chunk.tool_call_result) is not None:
            call_id = _call_id(result.origin)
            if call_id not in self._started:
                await self._start(call_id, result.origin.tool_name, result.origin.arguments)
            self._started.discard(call_id)
            if result.error:
                await self.ctx.tool_finished(call_id, error=str(result.result))
            else:
                await self.ctx.tool_finished(call_id, result=as_json(result.result))
        usage = chunk.meta.get("usage")
        if isinstance(usage, dict):
            self.ctx.add_usage(
                usage.get("prompt_tokens") or usage.get("input_tokens") or 0,
                usage.get("completion_tokens") or usage.get("output_tokens") or 0,
            )

    async def flush(self) -> None:
        """Report the tool calls assembled so far as started."""
        pending, self._pending = self._pending, {}
        for _, call in sorted(pending.items()):
            arguments = _arguments("".join(call.arguments))
            await self._start(_call_id(ToolCall(call.name, arguments, call.call_id)), call.name, arguments)

    async def _start(self, call_id: str, name: str, arguments: dict[str, Any]) -> None:
        self._started.add(call_id)
        await self.ctx.tool_started(call_id, name, arguments)


def _call_id(call: ToolCall) -> str:
    """The call's id; for a provider that gives none, one made from its name and arguments, which the
    streamed call and its result (whose `origin` is the parsed call) both have."""
    if call.id:
        return str(call.id)
    digest = hashlib.sha256(json.dumps(call.arguments, sort_keys=True, default=str).encode()).hexdigest()
    return f"{call.tool_name}-{digest[:12]}"


def _arguments(text: str) -> dict[str, Any]:
    """The streamed arguments as Haystack parses them (a JSON object); anything else kept as text."""
    try:
        parsed = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return {"arguments": text}
    return parsed if isinstance(parsed, dict) else {"arguments": parsed}
