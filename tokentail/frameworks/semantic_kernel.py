"""Semantic Kernel agents and chat services in a tokentail worker (`pip install tokentail[semantic-kernel]`).

    from tokentail.frameworks.semantic_kernel import chat_completion_agent
    weather = chat_completion_agent(ChatCompletionAgent(service=..., plugins=[WeatherPlugin()]))

registered like any other agent (`TOKENTAIL_AGENTS='{"weather": "my_module:weather"}'`). A
`ChatCompletionAgent` streams through `invoke_stream`; a bare chat service (`chat_service(service,
settings, kernel)`) through `get_streaming_chat_message_content`. Both are async, so a cancel of the
run cancels the SDK's HTTP stream.

Semantic Kernel calls the kernel's functions itself and streams nothing about them, so the tool
calls are seen through an `AUTO_FUNCTION_INVOCATION` filter: `tool.started` before the function
runs, `tool.completed` after, or `tool.failed` if it raised. Semantic Kernel catches a function's
exception and gives the model its text as the result, so a `FUNCTION_INVOCATION` filter, inside,
sees it first. The filters are added to a kernel once and find the run they belong to through
context variables, so runs that share an agent (and its kernel) in one worker never see each
other's calls.
"""

import contextvars
import json
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine
from typing import Any

from semantic_kernel import Kernel
from semantic_kernel.agents import ChatCompletionAgent, ChatHistoryAgentThread
from semantic_kernel.connectors.ai.chat_completion_client_base import ChatCompletionClientBase
from semantic_kernel.connectors.ai.prompt_execution_settings import PromptExecutionSettings
from semantic_kernel.contents import ChatHistory, StreamingChatMessageContent
from semantic_kernel.filters import AutoFunctionInvocationContext, FilterTypes, FunctionInvocationContext

from tokentail.worker.run.context import RunContext

TokentailAgent = Callable[[RunContext], Awaitable[None]]
Next = Callable[[AutoFunctionInvocationContext], Coroutine[Any, Any, None]]

_RUN: contextvars.ContextVar[RunContext] = contextvars.ContextVar("tokentail_run")
# The exception the function of the call being made raised, if any (Semantic Kernel swallows it).
_RAISED: contextvars.ContextVar[list[Exception]] = contextvars.ContextVar("tokentail_raised")


def history(ctx: RunContext) -> ChatHistory:
    """The session's earlier turns as Semantic Kernel's chat history."""
    chat = ChatHistory()
    for turn in ctx.history:
        (chat.add_user_message if turn.role == "user" else chat.add_assistant_message)(turn.content)
    return chat


def chat_completion_agent(agent: ChatCompletionAgent) -> TokentailAgent:
    """A tokentail agent that runs `agent` on the run's input, after the session's earlier turns."""
    _watch(agent.kernel)

    async def run(ctx: RunContext) -> None:
        _RUN.set(ctx)
        thread = ChatHistoryAgentThread(chat_history=history(ctx))
        await _stream(ctx, (item.message async for item in agent.invoke_stream(ctx.input, thread=thread)))

    return run


def chat_service(
    service: ChatCompletionClientBase,
    settings: PromptExecutionSettings,
    kernel: Kernel | None = None,
    system_message: str | None = None,
) -> TokentailAgent:
    """A tokentail agent that asks a chat service directly; give `kernel` (and settings with a
    function choice behavior) for its functions to be called, and `system_message` for the chat
    history to start with it (the tutorials' `history.add_system_message(...)`)."""
    kernel = kernel or Kernel()
    _watch(kernel)

    async def run(ctx: RunContext) -> None:
        _RUN.set(ctx)
        chat = ChatHistory(system_message=system_message) if system_message else ChatHistory()
        for message in history(ctx).messages:
            chat.add_message(message)
        chat.add_user_message(ctx.input)
        stream = service.get_streaming_chat_message_content(chat, settings, kernel=kernel)
        await _stream(ctx, (content async for content in stream if content is not None))

    return run


async def _stream(ctx: RunContext, contents: AsyncIterable[StreamingChatMessageContent]) -> None:
    async for content in contents:
        if text := content.content:
            await ctx.delta(text, agent=content.name or None)
        usage = content.metadata.get("usage")
        if usage is not None:  # the last chunk of each model call (SK asks for `include_usage`)
            ctx.add_usage(usage.prompt_tokens or 0, usage.completion_tokens or 0)


def _watch(kernel: Kernel) -> None:
    if all(added is not _tool_events for _, added in kernel.auto_function_invocation_filters):
        kernel.add_filter(FilterTypes.AUTO_FUNCTION_INVOCATION, _tool_events)
        kernel.add_filter(FilterTypes.FUNCTION_INVOCATION, _raised)


async def _raised(
    context: FunctionInvocationContext, next: Callable[[FunctionInvocationContext], Coroutine[Any, Any, None]]
) -> None:
    try:
        await next(context)
    except Exception as exc:
        if (raised := _RAISED.get(None)) is not None:
            raised.append(exc)
        raise


async def _tool_events(context: AutoFunctionInvocationContext, next: Next) -> None:
    ctx = _RUN.get(None)
    if ctx is None:  # the kernel serves something other than a tokentail run
        await next(context)
        return
    call = context.function_call_content
    call_id = (call.id if call is not None else None) or f"{context.function.fully_qualified_name}-{id(context)}"
    arguments = {name: value for name, value in (context.arguments or {}).items() if _is_json(value)}
    await ctx.tool_started(call_id, context.function.name, arguments)
    raised: list[Exception] = []
    reset = _RAISED.set(raised)
    try:
        await next(context)
    except Exception as exc:  # reported, then Semantic Kernel handles it as it would
        await ctx.tool_finished(call_id, error=exc)
        raise
    finally:
        _RAISED.reset(reset)
    if raised:  # the model is told Semantic Kernel's text of it; the stream says the call failed
        await ctx.tool_finished(call_id, error=raised[0])
        return
    result = context.function_result
    await ctx.tool_finished(
        call_id, result=result.value if result is not None and _is_json(result.value) else str(result)
    )


def _is_json(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
