"""A2A's task events from a run's stored events (gateway/encodings/a2a.py): what a client folds them
into, whole and resumed after every event (the resume extension's `Last-Event-ID`)."""

import json
from typing import Any

import pytest
from a2a.types.a2a_pb2 import Task, TaskArtifactUpdateEvent, TaskState, TaskStatusUpdateEvent
from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]

from tokentail.gateway.encodings.a2a import RESUME_EXTENSION, A2AEvents, Event
from tokentail.gateway.reading.feed import Batch
from tokentail.gateway.reading.hub import Chunk
from tokentail.shared.store import StoredEvent

RUN = "r_case"
TASK = "s_casecasecasecasecasecar_casecasecase"


def stored(*events: tuple[str, dict[str, Any]]) -> list[StoredEvent]:
    return [
        StoredEvent(seq, kind.encode(), json.dumps({"run_id": RUN, **data}).encode(), seq * 1000)
        for seq, (kind, data) in enumerate(events, start=1)
    ]


ASKED = ("input.required", {"input_id": "in_1", "kind": "text", "prompt": "Which file?", "schema": {}})
PLAIN = stored(
    ("run.queued", {"input": "hello"}),
    ("run.started", {"attempt": 1, "reason": "start"}),
    ("message.delta", {"text": "Hel"}),
    ("message.delta", {"text": "lo"}),
    ("tool.started", {"call_id": "c1", "name": "t", "arguments": {}}),
    ("tool.completed", {"call_id": "c1", "result": "ok", "duration_ms": 1}),
    ("message.delta", {"text": " there"}),
    ("run.completed", {"output": "Hello there", "usage": {}}),
)
TAKEN_OVER = stored(
    ("run.queued", {"input": "hello"}),
    ("run.started", {"attempt": 1, "reason": "start"}),
    ("message.delta", {"text": "Kept"}),
    ("message.delta", {"text": " lost"}),
    ("run.continued", {"attempt": 2, "from_event_id": 3}),
    ("message.delta", {"text": " again"}),
    ("run.completed", {"output": "Kept again", "usage": {}}),
)
QUESTION = stored(
    ("run.queued", {"input": "delete"}),
    ("run.started", {"attempt": 1, "reason": "start"}),
    ("message.delta", {"text": "Asking. "}),
    ASKED,
    ("input.received", {"input_id": "in_1", "answer": "a.txt"}),
    ("run.started", {"attempt": 1, "reason": "resume"}),
    ("message.delta", {"text": "Done."}),
    ("run.completed", {"output": "Asking. Done.", "usage": {}}),
)


class Folded:
    """What an A2A client keeps: the Task it opened with, then each event applied (a2a-sdk's way)."""

    def __init__(self) -> None:
        self.state: TaskState | None = None
        self.text: list[str] = []
        self.generations: list[int] = []

    def apply(self, event: Event) -> None:
        self.generations.append(int(MessageToDict(event)["metadata"][RESUME_EXTENSION]["generation"]))
        if isinstance(event, Task):
            self.state = event.status.state
            self.text = [part.text for artifact in event.artifacts for part in artifact.parts]
        elif isinstance(event, TaskStatusUpdateEvent):
            self.state = event.status.state
        elif isinstance(event, TaskArtifactUpdateEvent):
            texts = [part.text for part in event.artifact.parts]
            self.text = self.text + texts if event.append else texts


def play(events: list[StoredEvent], after: int | None = None, answered: tuple[str, ...] = ()) -> list[Event]:
    renderer = A2AEvents(TASK, "s_ctx", RUN, after, answered)
    out: list[Event] = []
    for event in events:  # one batch per event, as a live stream gets them
        out += renderer.events(Batch([Chunk([event])]))
        if renderer.finished:
            break
    return out


@pytest.mark.parametrize(
    ("events", "text", "state", "answered"),
    [
        (PLAIN, "Hello there", TaskState.TASK_STATE_COMPLETED, ()),
        (TAKEN_OVER, "Kept again", TaskState.TASK_STATE_COMPLETED, ()),
        (QUESTION, "Asking. Done.", TaskState.TASK_STATE_COMPLETED, ("in_1",)),
        (QUESTION, "Asking. ", TaskState.TASK_STATE_INPUT_REQUIRED, ()),
    ],
)
def test_a_stream_resumed_after_any_event_ends_the_same_with_no_event_twice(
    events: list[StoredEvent], text: str, state: TaskState, answered: tuple[str, ...]
) -> None:
    whole = play(events, answered=answered)
    assert isinstance(whole[0], Task)
    full = Folded()
    for event in whole:
        full.apply(event)
    assert ("".join(full.text), full.state) == (text, state)
    last = full.generations[-1]
    assert full.generations == [1, *range(2, last + 1)]  # the Task at 1, then one more each: no gap
    for after in range(1, last + 1):
        resumed = Folded()
        seen = [event for event in whole if full.generations[whole.index(event)] <= after]
        for event in seen:
            resumed.apply(event)
        tail = play(events, after, answered)
        assert isinstance(tail[0], Task)  # the Task as the client had it, then what follows
        for event in tail:
            resumed.apply(event)
        assert ("".join(resumed.text), resumed.state) == (text, state)
        assert resumed.generations[len(seen) + 1 :] == list(range(after + 1, last + 1))


def test_the_task_of_a_whole_run_read_at_once() -> None:
    renderer = A2AEvents(TASK, "s_ctx", RUN)
    events = renderer.events(Batch([Chunk(PLAIN)]))
    assert len(events) == 1
    task = events[0]
    assert isinstance(task, Task)
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert [part.text for part in task.artifacts[0].parts] == ["Hello there"]
    assert task.history[0].parts[0].text == "hello"
    metadata = MessageToDict(task)["metadata"][RESUME_EXTENSION]
    assert metadata == {"eventId": "6", "generation": 6}


def test_a_question_is_the_status_message_and_ends_the_stream() -> None:
    events = play(QUESTION)
    asked = events[-1]
    assert isinstance(asked, TaskStatusUpdateEvent)
    assert asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    prompt, schema = asked.status.message.parts
    assert prompt.text == "Which file?"
    assert MessageToDict(schema)["data"] == {"inputId": "in_1", "kind": "text", "schema": {}}
