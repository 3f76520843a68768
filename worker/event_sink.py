"""What an agent writes, wherever it goes: to its run (`RunContext`, worker/run/context.py) or to a
framework's sub-agent shown as a child of the run (`InlineChild`, worker/run/children.py). Both are an
`EventSink` (tests/unit/worker/test_event_sink.py has mypy check it), so a framework adapter
(tokentail/frameworks/) streams to either through the same code. Below one run's room, so that both it
and the adapters may import it."""

from typing import Any, Protocol


class EventSink(Protocol):
    """Each write takes an optional `agent=` label: the agent of a team that wrote it."""

    async def delta(self, text: str, *, agent: str | None = None) -> None:
        """Answer text (`message.delta`)."""

    async def reasoning(self, text: str, *, agent: str | None = None) -> None:
        """Thinking text, apart from the answer (`reasoning.delta`)."""

    async def status(self, text: str, *, agent: str | None = None) -> None:
        """A `status` event."""

    async def data(self, name: str, data: Any, *, agent: str | None = None) -> None:
        """A `data.<name>` event holding `data` (any JSON value)."""

    async def tool_started(
        self, call_id: str, name: str, arguments: dict[str, Any], *, agent: str | None = None
    ) -> None:
        """`tool.started`."""

    async def tool_finished(
        self,
        call_id: str,
        *,
        result: Any = None,
        error: str | BaseException | None = None,
        denied: bool = False,
        agent: str | None = None,
    ) -> None:
        """`tool.completed` with `result`, or `tool.failed` with `error` (`denied`: a person denied it)."""

    async def subagent(self, name: str, *, call_id: str, input: str = "") -> "EventSink":  # noqa: A002
        """A sub-agent shown as a child run in the tool call `call_id` (ended by its `end` or `fail`)."""

    def add_usage(self, input_tokens: int, output_tokens: int) -> None:
        """What a model call cost (tokens in, tokens out)."""
