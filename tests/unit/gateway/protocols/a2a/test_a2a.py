"""A2A's task events from a run's stored events (gateway/protocols/a2a/render.py): what a client folds them
into, whole and resumed after every event (the resume extension's `Last-Event-ID`)."""

import json
from typing import Any

import pytest
from a2a.server.routes.rest_dispatcher import RestDispatcher
from a2a.types.a2a_pb2 import StreamResponse, Task, TaskArtifactUpdateEvent, TaskState, TaskStatusUpdateEvent
from google.protobuf.json_format import MessageToDict, Parse  # type: ignore[import-untyped]

from tests.unit.gateway.protocols.test_protocol_cases import CASES, Case, Log
from tokentail.gateway.live.chunk import Chunk
from tokentail.gateway.protocols.a2a.render import RESUME_EXTENSION, SUBTASKS_EXTENSION, A2AEvents, Event
from tokentail.gateway.protocols.a2a.routes import REST_ROUTES
from tokentail.gateway.reading.feed import Batch
from tokentail.shared.features.a2a_push import push_body
from tokentail.shared.features.webhook_messages import Hook
from tokentail.shared.store.reads import StoredEvent
from tokentail.shared.vocabulary.events import Gap

pytestmark = pytest.mark.a2a


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


# -- every case of the protocols' table (gateway/protocols/test_protocol_cases.py), as A2A's clients play it --

ENDED = {
    "completed": TaskState.TASK_STATE_COMPLETED,
    "cancelled": TaskState.TASK_STATE_CANCELED,
    "failed": TaskState.TASK_STATE_FAILED,
}


def stream(log: Log, at: int, after: int | None) -> list[tuple[int, list[Event]]]:
    """A stream opened when id `at` is the last stored (its catch-up is one batch), then live: what each
    batch became, with the last id it read. `after`: the resume extension's Last-Event-ID."""
    renderer = A2AEvents(TASK, "s_ctx", RUN, after, tuple(log.answered(at)))
    stored = log.events
    caught_up = [event for event in stored if event.seq <= at]
    gap = Gap(reason="trimmed", first_available=stored[0].seq) if stored[0].seq > 1 else None
    out = [(at, renderer.events(Batch([Chunk(caught_up)] if caught_up else [], gap)))]
    for event in stored:
        if event.seq > at and not renderer.finished:
            out.append((event.seq, renderer.events(Batch([Chunk([event])]))))
    return out


def journey(log: Log) -> list[int]:
    """Where each of the client's streams opens: its message (after run.queued), then each answer."""
    return [log.seqs("run.queued")[0], *log.seqs("input.received")]


def play_case(log: Log, cut: tuple[int, int] | None = None) -> Folded:
    """The case as an A2A client plays it; with `cut` (stream k, batch i), that stream drops after its
    batch i and the client subscribes with Last-Event-ID, as the resume extension says."""
    folded = Folded()
    for k, at in enumerate(journey(log)):
        batches = stream(log, at, None)
        if cut is not None and cut[0] == k:
            batches = batches[: cut[1] + 1]
        for _, events in batches:
            for event in events:
                folded.apply(event)
        if cut is not None and cut[0] == k:
            seen = folded.generations[-1]
            resumed = stream(log, batches[-1][0], seen)
            opening = [event for _, events in resumed for event in events]
            assert isinstance(opening[0], Task)
            before = list(folded.generations)
            for event in opening:
                folded.apply(event)
            after = folded.generations[len(before) :]
            assert after[0] == seen and after[1:] == list(range(seen + 1, seen + len(after))), after
    return folded


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name) for case in CASES])
def test_every_case_shows_the_run_s_text_whole_and_resumed_after_any_batch(case: Case) -> None:
    log = Log(case)
    whole = play_case(log)
    assert "".join(whole.text) == case.expected_text
    assert whole.state == ENDED[case.ended]
    for k, at in enumerate(journey(log)):
        for i in range(len(stream(log, at, None)) - 1):
            resumed = play_case(log, (k, i))
            assert ("".join(resumed.text), resumed.state) == ("".join(whole.text), whole.state), (k, i)


def _hook(kind: str, data: dict[str, Any], output: str | None = None) -> Hook:
    entry = {"seq": 7, "ts": "1700000000123456", "type": kind, "data": json.dumps({"run_id": "r_abcdefghijkl", **data})}
    entry |= {"url": "", "tenant": "acme", "output": output, "segment": 0, "a2a": True}
    return Hook.parse("s_" + "a" * 22, json.dumps(entry).encode())


def test_a_push_is_a_stream_response_the_task_at_its_end_else_a_status_update() -> None:
    task_id = "s_" + "a" * 22 + "r_abcdefghijkl"
    done = json.loads(push_body(_hook("run.completed", {"usage": {}}, output="Hi")))
    assert done == {
        "task": {
            "id": task_id,
            "contextId": "s_" + "a" * 22,
            "status": {"state": "TASK_STATE_COMPLETED", "timestamp": "2023-11-14T22:13:20.123Z"},
            "artifacts": [{"artifactId": "answer", "name": "answer", "parts": [{"text": "Hi"}]}],
        }
    }
    asked = _hook("input.required", {"input_id": "in_1", "kind": "text", "prompt": "Which?", "schema": {}})
    assert asked.task_push and asked.url == ""
    update = json.loads(push_body(asked))["statusUpdate"]
    assert update["taskId"] == task_id and update["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"
    assert update["status"]["message"]["parts"] == [
        {"text": "Which?"},
        {"data": {"inputId": "in_1", "kind": "text", "schema": {}}},
    ]
    failed = _hook("run.failed", {"error": {"type": "agent_error", "message": "boom"}})
    assert json.loads(push_body(failed))["statusUpdate"]["status"]["message"]["parts"] == [
        {"text": "agent_error: boom"}
    ]
    # The body parses as a2a-sdk's own StreamResponse.
    parsed = Parse(push_body(asked), StreamResponse())
    assert parsed.status_update.status.state == TaskState.TASK_STATE_INPUT_REQUIRED


def test_a_gap_is_the_readers_news_and_numbers_no_generation() -> None:
    """A reader whose position was trimmed away is told of the gap, and numbers the task's events as a
    reader without one does (another gateway, GetTask): its resume cursor means the same everywhere."""
    trimmed = PLAIN[2:]  # its first events gone
    told = A2AEvents(TASK, "s_ctx", RUN).events(Batch([Chunk(trimmed)], Gap(reason="trimmed", first_available=3)))
    untold = A2AEvents(TASK, "s_ctx", RUN).events(Batch([Chunk(trimmed)]))
    assert len(told) == len(untold) == 1  # the Task, as the events make it
    told_resume = MessageToDict(told[0])["metadata"][RESUME_EXTENSION]
    assert told_resume.pop("gap") == {"reason": "trimmed", "firstAvailable": 3}
    assert told_resume == MessageToDict(untold[0])["metadata"][RESUME_EXTENSION]


# -- a run's children (docs/subagents.md): each a task of its own, named by its parent's --------------

CHILD = "r_childchild"
CHILD_TASK = "s_ctx" + CHILD
SPAWNED = {"parent_run_id": RUN, "agent": "helper", "name": "helper", "input": "look it up"}
TREE = [
    StoredEvent(seq, kind.encode(), json.dumps(data).encode(), seq * 1000)
    for seq, (kind, data) in enumerate(
        [
            ("run.queued", {"run_id": RUN, "input": "research"}),
            ("run.started", {"run_id": RUN, "attempt": 1, "reason": "start"}),
            ("tool.started", {"run_id": RUN, "call_id": "c1", "name": "helper", "arguments": {"input": "look"}}),
            ("run.spawned", {"run_id": CHILD, **SPAWNED, "cause": {"type": "tool_call", "call_id": "c1"}}),
            ("run.started", {"run_id": CHILD, "attempt": 1, "reason": "start", "parent_run_id": RUN}),
            ("message.delta", {"run_id": CHILD, "text": "found"}),
            ("input.required", {"run_id": CHILD, **ASKED[1]}),
            ("input.received", {"run_id": CHILD, "input_id": "in_1", "answer": "a.txt"}),
            ("run.completed", {"run_id": CHILD, "output": "found", "usage": {}, "parent_run_id": RUN}),
            ("tool.completed", {"run_id": RUN, "call_id": "c1", "result": "found", "duration_ms": 1}),
            ("message.delta", {"run_id": RUN, "text": "It says: found"}),
            ("run.completed", {"run_id": RUN, "output": "It says: found", "usage": {}}),
        ],
        start=1,
    )
]


def test_a_parent_s_status_updates_name_its_children_and_their_states_and_show_none_of_their_text() -> None:
    events = A2AEvents(TASK, "s_ctx", RUN).events(Batch([Chunk(TREE)]))
    (task,) = events
    assert isinstance(task, Task) and task.status.state == TaskState.TASK_STATE_COMPLETED
    assert [part.text for part in task.artifacts[0].parts] == ["It says: found"]  # the child's text is its own
    child = {"taskId": CHILD_TASK, "agent": "helper", "name": "helper", "state": "TASK_STATE_COMPLETED"}
    assert MessageToDict(task)["metadata"][SUBTASKS_EXTENSION] == {"children": [child]}
    live = A2AEvents(TASK, "s_ctx", RUN)
    updates = [
        e for event in TREE for e in live.events(Batch([Chunk([event])])) if isinstance(e, TaskStatusUpdateEvent)
    ]
    named = [MessageToDict(update)["metadata"].get(SUBTASKS_EXTENSION) for update in updates]
    states = [tree["children"][0]["state"] for tree in named if tree is not None]
    # its child started, asked, was answered, ended; then its own end (which names the child too)
    assert states == [
        f"TASK_STATE_{state}" for state in ("WORKING", "INPUT_REQUIRED", "WORKING", "COMPLETED", "COMPLETED")
    ]
    assert all(update.status.state != TaskState.TASK_STATE_INPUT_REQUIRED for update in updates)  # the child's question


def test_a_child_is_a_task_of_the_same_context_whose_first_message_names_its_parent() -> None:
    renderer = A2AEvents(CHILD_TASK, "s_ctx", CHILD, parent_task_id=TASK)
    events: list[Event] = []
    for event in TREE:  # one batch per event, as a live stream gets them
        events += renderer.events(Batch([Chunk([event])]))
        if renderer.finished:
            break
    opened = events[0]
    assert isinstance(opened, Task) and opened.context_id == "s_ctx"
    assert list(opened.history[0].reference_task_ids) == [TASK] and opened.history[0].parts[0].text == "look it up"
    assert MessageToDict(opened)["metadata"][SUBTASKS_EXTENSION] == {"parentTaskId": TASK}
    asked = events[-1]  # its question ends its stream, as any task's
    assert isinstance(asked, TaskStatusUpdateEvent) and asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    whole = A2AEvents(CHILD_TASK, "s_ctx", CHILD, answered=("in_1",), parent_task_id=TASK)
    (task,) = whole.events(Batch([Chunk(TREE)]))
    assert isinstance(task, Task) and task.status.state == TaskState.TASK_STATE_COMPLETED
    assert [part.text for part in task.artifacts[0].parts] == ["found"]


def test_each_http_json_route_names_a_method_of_the_sdk_s_rest_dispatcher() -> None:
    # gateway/protocols/a2a/routes.py names them, not imports them: the SDK is imported by the first request.
    assert [name for _, _, name in REST_ROUTES if not callable(getattr(RestDispatcher, name, None))] == []
