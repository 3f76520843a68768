"""A response's `output` (gateway/protocols/responses/render.py): its items by output_index, the message or
reasoning item open for the text streamed into it, the items a takeover leaves out, and the stream
events of each item (`response.output_item.*`, `.content_part.*`, `.output_text.*`,
`.reasoning_summary_*`, `.function_call_arguments.*`).

Which item an operation makes is the response's choice. It numbers all its events, these included,
with one `Numbering`. Events are serialised after the whole batch is rendered, so each carries
copies of the items, which go on changing here.
"""

import json
from typing import Any

from tokentail.gateway.reducer import operations as op

Part = dict[str, Any]


class Numbering:
    """The `sequence_number`s of one response's events, from 0 (`response.created`)."""

    def __init__(self) -> None:
        self.next = 0

    def event(self, type_: str, **fields: Any) -> Part:
        event = {"type": type_, **fields, "sequence_number": self.next}
        self.next += 1
        return event


class ResponseOutput:
    """The output items of one response, and the events that add, stream and end them."""

    def __init__(self, numbering: Numbering) -> None:
        self._event = numbering.event
        self._items: list[Part] = []  # every output item, by output_index
        self._dropped: set[int] = set()  # indexes of a dead attempt's items
        self._open: tuple[str, int] | None = None  # the open item: ("message" | "reasoning", output_index)
        self._pieces: list[str] = []  # the open item's text, joined when it is read (+= would copy it each time)

    @property
    def is_open(self) -> bool:
        return self._open is not None

    def listed(self) -> list[Part]:
        """The Response object's `output`: the items not dropped, the open one with its text so far."""
        self._sync_open()
        return [item for index, item in enumerate(self._items) if index not in self._dropped]

    def _add(self, item: Part) -> tuple[list[Part], int]:
        """A new item (the open one done first), and its output_index."""
        parts = self.close("completed")
        self._items.append(item)
        index = len(self._items) - 1
        parts.append(self._event("response.output_item.added", output_index=index, item=dict(item)))
        return parts, index

    def add_whole(self, item: Part) -> list[Part]:
        """An item that is complete as it is added."""
        parts, index = self._add(item)
        parts.append(self._event("response.output_item.done", output_index=index, item=dict(item)))
        return parts

    def add_call(self, item_id: str, call_id: str, name: str, arguments: str) -> list[Part]:
        """A `function_call` item, its arguments (whole) in one delta: it is done at once."""
        item = {
            "type": "function_call",
            "id": item_id,
            "call_id": call_id,
            "name": name,
            "arguments": "",
            "status": "in_progress",
        }
        parts, index = self._add(item)
        position = {"item_id": item_id, "output_index": index}
        parts.append(self._event("response.function_call_arguments.delta", **position, delta=arguments))
        item.update(arguments=arguments, status="completed")
        parts.append(self._event("response.function_call_arguments.done", **position, name=name, arguments=arguments))
        parts.append(self._event("response.output_item.done", output_index=index, item=dict(item)))
        return parts

    def open(self, kind: op.BlockKind, seq: int) -> list[Part]:
        """A `message` item (text) or a `reasoning` one, opened by event `seq`, for text to stream into."""
        # The item's content (or summary) is a new list, so the added event keeps its empty one.
        if kind == "text":
            item: Part = {"type": "message", "id": f"msg_{seq}", "role": "assistant", "status": "in_progress"}
            part: Part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            parts, index = self._add({**item, "content": []})
            self._items[index]["content"] = [part]
            position = {"item_id": item["id"], "output_index": index, "content_index": 0}
            parts.append(self._event("response.content_part.added", **position, part=dict(part)))
        else:
            item = {"type": "reasoning", "id": f"rs_{seq}", "summary": [], "status": "in_progress"}
            part = {"type": "summary_text", "text": ""}
            parts, index = self._add(item)
            self._items[index]["summary"] = [part]
            position = {"item_id": item["id"], "output_index": index, "summary_index": 0}
            parts.append(self._event("response.reasoning_summary_part.added", **position, part=dict(part)))
        self._open = ("message" if kind == "text" else "reasoning", index)
        self._pieces = []
        return parts

    def delta(self, kind: op.BlockKind, text: str) -> Part:
        """Text (or reasoning) streamed into the open item."""
        assert self._open is not None
        index = self._open[1]
        self._pieces.append(text)
        position = {"item_id": self._items[index]["id"], "output_index": index}
        if kind == "text":
            return self._event("response.output_text.delta", **position, content_index=0, delta=text, logprobs=[])
        return self._event("response.reasoning_summary_text.delta", **position, summary_index=0, delta=text)

    def passed(self, texts: list[str]) -> None:
        """Text of the open item that its client has (a resume's): kept in it, with no event."""
        self._pieces += texts

    def close(self, status: str) -> list[Part]:
        """The open text or reasoning item's done events, ending it `status`."""
        if self._open is None:
            return []
        self._sync_open()
        kind, index = self._open
        self._open = None
        item = self._items[index]
        item["status"] = status
        if kind == "message":
            part = item["content"][0]
            position = {"item_id": item["id"], "output_index": index, "content_index": 0}
            parts = [
                self._event("response.output_text.done", **position, text=part["text"], logprobs=[]),
                self._event("response.content_part.done", **position, part=dict(part)),
            ]
        else:
            summary = item["summary"][0]
            position = {"item_id": item["id"], "output_index": index, "summary_index": 0}
            parts = [
                self._event("response.reasoning_summary_text.done", **position, text=summary["text"]),
                self._event("response.reasoning_summary_part.done", **position, part=dict(summary)),
            ]
        return [*parts, self._event("response.output_item.done", output_index=index, item=copied(item))]

    def drop(self, after: int, kept: tuple[op.Operation, ...]) -> list[Part]:
        """A takeover dropped the run's events after `after` (0: all): the items they opened leave
        the final response; an item opened before keeps the text the reducer keeps (`kept`); the
        open item ends `incomplete`. Item ids end in the id of the event that opened them (an
        approval's: its input id)."""
        texts = {shown.block: shown.text for shown in kept if isinstance(shown, op.BlockAppended)}
        parts = []
        if self._open is not None:
            if (block := _opened_by(self._items[self._open[1]])) is not None and block <= after:
                self._pieces = [texts.get(block, "")]
            parts = self.close("incomplete")
        for index, item in enumerate(self._items):
            if (block := _opened_by(item)) is None:
                continue
            if block > after:
                self._dropped.add(index)
            elif block in texts and item["type"] in ("message", "reasoning"):
                item["content" if item["type"] == "message" else "summary"][0]["text"] = texts[block]
        return parts

    def _sync_open(self) -> None:
        """The open item's text, joined into it."""
        if self._open is not None:
            kind, index = self._open
            self._items[index]["content" if kind == "message" else "summary"][0]["text"] = "".join(self._pieces)


def copied(item: Part) -> Part:
    """A deep copy, for an event: an item's content lists go on changing in `ResponseOutput`."""
    copy: Part = json.loads(json.dumps(item))
    return copy


def _opened_by(item: Part) -> int | None:
    """The id of the event that opened an item (None for an approval request: its id is the input's)."""
    opened = item["id"].rsplit("_", 1)[-1]
    return int(opened) if opened.isdigit() else None
