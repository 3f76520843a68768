"""The text and reasoning messages open in the client's AG-UI run. A run's block is a message opened
by its first delta and ended by what follows it; but an AG-UI run may end (at questions) while a
block of the tokentail run is open, and @ag-ui/client's verifier refuses a run that finishes with a
message open, or content for a message the AG-UI run has not opened: so such a message is ended
with the AG-UI run, and opened again (the same id: the client appends to it) if it goes on."""

from ag_ui.core import (
    BaseEvent,
    ReasoningEndEvent,
    ReasoningMessageEndEvent,
    ReasoningMessageStartEvent,
    ReasoningStartEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
)

from tokentail.gateway.reducer import operations as op


class OpenMessages:
    def __init__(self) -> None:
        self._open: dict[str, tuple[str, op.BlockKind]] = {}  # message id -> its run, its kind

    def __contains__(self, message_id: str) -> bool:
        return message_id in self._open

    def opened(self, run_id: str, kind: op.BlockKind, message_id: str) -> list[BaseEvent]:
        self._open[message_id] = (run_id, kind)
        if kind == "text":
            return [TextMessageStartEvent(message_id=message_id, role="assistant")]
        return [ReasoningStartEvent(message_id=message_id), ReasoningMessageStartEvent(message_id=message_id)]

    def closed(self, message_id: str) -> list[BaseEvent]:
        """The message's end; nothing if the AG-UI run has it closed already (it ended meanwhile)."""
        match self._open.pop(message_id, None):
            case None:
                return []
            case (_, "text"):
                return [TextMessageEndEvent(message_id=message_id)]
            case _:
                return [ReasoningMessageEndEvent(message_id=message_id), ReasoningEndEvent(message_id=message_id)]

    def all_closed(self) -> list[tuple[str, list[BaseEvent]]]:
        """Every open message's end, with its run (the AG-UI run ends)."""
        return [(run_id, self.closed(message_id)) for message_id, (run_id, _) in list(self._open.items())]

    def forget(self) -> None:
        """A new AG-UI run: the client has none open in it."""
        self._open = {}
