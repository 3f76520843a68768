"""A table of the event sequences the product writes, run against every protocol as its client sees it.

Each case is a run's stored events (as the worker and the session scripts write them: worker/run/job.py,
worker/run/recovery/takeover.py, shared/store/lua/start_run.lua) and what any client must end up showing: the text of
`run.completed.output`, each piece once, the tool calls each once with their outcome, the reasoning,
how the run ended. For each protocol the case is played as its client plays it (the requests it makes,
tests/clients/protocol_clients.py's fold of what it receives), then again cut after every event of every
response (AG-UI's after every frame: each has an id, inside an event too) and resumed as that client
resumes: it must end showing the same.

How the gateway builds each protocol's stream for a request is in ONE adapter function per protocol
below (`ai_sdk_stream`, `ag_ui_stream`, `responses_stream`, `native_stream`, `langgraph_stream`): the
table, the journeys and the folds do not depend on it.
"""

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, cast

import pytest

from tests.clients.protocol_clients import (
    AgUiAgent,
    AiSdkChat,
    ClientError,
    LangGraphClient,
    LangGraphV2Client,
    NativeClient,
    ResponsesClient,
    Shown,
    parse_sse,
)
from tokentail.gateway.encodings.sse import NativeSse
from tokentail.gateway.live.chunk import Chunk
from tokentail.gateway.protocols.ag_ui.render import AgUiEvents
from tokentail.gateway.protocols.ai_sdk.render import UiMessageStream
from tokentail.gateway.protocols.langgraph.runs import run_status
from tokentail.gateway.protocols.langgraph.state import thread_values
from tokentail.gateway.protocols.langgraph.v1 import render as langgraph
from tokentail.gateway.protocols.langgraph.v2.feed import StreamRequest, V2Feed
from tokentail.gateway.protocols.langgraph.v2.render import Cursor, sse_frame
from tokentail.gateway.protocols.responses.render import ResponseEvents
from tokentail.gateway.reading.feed import Batch
from tokentail.gateway.reading.renderer import Position
from tokentail.shared.store.reads import StoredEvent, entry_of
from tokentail.shared.vocabulary.errors import InvalidLastEventId
from tokentail.shared.vocabulary.events import Gap
from tokentail.shared.vocabulary.records import Question, RunRecord, SessionRecord

RUN = "r_case"
Json = dict[str, Any]
Event = tuple[str, Json]


# -- the table ----------------------------------------------------------------------------------------


def _started(reason: str = "start", attempt: int = 1) -> Event:
    return ("run.started", {"attempt": attempt, "reason": reason})


def _text(text: str) -> Event:
    return ("message.delta", {"text": text})


def _asked(call_id: str = "call_1") -> list[Event]:
    """A tool call approved by a person: its start and the question (the answer comes later)."""
    return [
        ("tool.started", {"call_id": call_id, "name": "delete_files", "arguments": {"count": 3}}),
        (
            "input.required",
            {"input_id": "in_1", "kind": "approval", "prompt": "Delete 3 files?", "schema": {}, "call_id": call_id},
        ),
    ]


def _asked_at_once() -> list[Event]:
    """Two tool calls approved in parallel: both questions open at once (`more` on the first)."""
    asking = {"kind": "approval", "prompt": "Delete 3 files?", "schema": {}}
    return [
        ("tool.started", {"call_id": "call_1", "name": "delete_files", "arguments": {"count": 3}}),
        ("tool.started", {"call_id": "call_2", "name": "delete_files", "arguments": {"count": 4}}),
        ("input.required", {"input_id": "in_1", **asking, "call_id": "call_1", "more": 1}),
        ("input.required", {"input_id": "in_2", **asking, "call_id": "call_2"}),
    ]


# Answered in the other order; the run goes on at the last answer.
ANSWERED_BOTH: list[Event] = [
    ("input.received", {"input_id": "in_2", "answer": {"approved": True}, "waiting_for": ["in_1"]}),
    ("input.received", {"input_id": "in_1", "answer": {"approved": True}}),
    _started("resume"),
    ("tool.completed", {"call_id": "call_1", "result": "deleted", "duration_ms": 1}),
    ("tool.completed", {"call_id": "call_2", "result": "deleted", "duration_ms": 1}),
]
BOTH_DELETED = (("call_1", "completed"), ("call_2", "completed"))

ANSWERED: list[Event] = [
    ("input.received", {"input_id": "in_1", "answer": {"approved": True}}),
    _started("resume"),
    ("tool.completed", {"call_id": "call_1", "result": "deleted", "duration_ms": 1}),
]
RETRYING: list[Event] = [
    ("run.retrying", {"attempt": 2, "reason": "the worker running attempt 1 stopped"}),
    _started("takeover", 2),
]


def _continued(from_event_id: int) -> Event:
    return ("run.continued", {"attempt": 2, "from_event_id": from_event_id})


def _completed(output: str) -> Event:
    return ("run.completed", {"output": output, "usage": {"input_tokens": 1, "output_tokens": 2}})


QUEUED: Event = ("run.queued", {"input": "clean up"})
_STATUS_OF: dict[str, Any] = {"run.completed": "completed", "run.failed": "failed", "run.cancelled": "cancelled"}
BEFORE = "Before the question. "
DELETED = (("call_1", "completed"),)
TWO_AT_ONCE = [
    QUEUED,
    _started(),
    _text(BEFORE),
    *_asked_at_once(),
    *ANSWERED_BOTH,
    _text("Done."),
    _completed(BEFORE + "Done."),
]


@dataclass(frozen=True)
class Case:
    name: str
    events: tuple[Event, ...]
    tools: tuple[tuple[str, str], ...] = ()
    reasoning: str = ""
    ended: str = "completed"
    text: str | None = None  # what is shown, when the run has no output (cancelled) or lost part of it (a gap)
    first: int = 1  # the first id the stream still holds (a trimmed stream: more)
    elsewhere: bool = False  # its question is answered on another device (REST), not by this client
    # What a chain of Responses shows, where it differs: a response is done once it ends, so a run
    # that starts over after an answer streams again, in the response after the answer, what came
    # before the question (the response that asked keeps it too). docs/openai-responses.md says so.
    responses_text: str | None = None
    responses_tools: tuple[tuple[str, str], ...] | None = None

    @property
    def expected_text(self) -> str:
        if self.text is not None:
            return self.text
        output: str = next(data["output"] for kind, data in self.events if kind == "run.completed")
        return output


def _case(name: str, *events: Event | list[Event], **expected: Any) -> Case:
    flat: list[Event] = []
    for item in events:
        flat += item if isinstance(item, list) else [item]
    return Case(name, tuple(flat), **expected)


CASES = [
    _case("plain", QUEUED, _started(), _text("Hello "), _text("world."), _completed("Hello world.")),
    _case(
        "reasoning_then_text",
        QUEUED,
        _started(),
        ("reasoning.delta", {"text": "Think "}),
        ("reasoning.delta", {"text": "first."}),
        _text("Then "),
        _text("answer."),
        _completed("Then answer."),
        reasoning="Think first.",
    ),
    _case(
        "parallel_tool_calls",
        QUEUED,
        _started(),
        _text("Looking. "),
        ("tool.started", {"call_id": "c1", "name": "weather", "arguments": {"city": "Paris"}}),
        ("tool.started", {"call_id": "c2", "name": "weather", "arguments": {"city": "Rome"}}),
        ("tool.completed", {"call_id": "c2", "result": {"sky": "sun"}, "duration_ms": 3}),
        ("tool.failed", {"call_id": "c1", "error": "timeout", "duration_ms": 9}),
        _text("Rome is sunny."),
        _completed("Looking. Rome is sunny."),
        tools=(("c1", "failed"), ("c2", "completed")),
    ),
    _case(
        "data_and_status",
        QUEUED,
        _started(),
        ("status", {"text": "Looking it up"}),
        ("data.chart", {"data": {"points": [1, 2]}}),
        _text("Here "),
        ("status", {"text": "Almost there"}),
        _text("it is."),
        _completed("Here it is."),
    ),
    _case(
        "cancel_during_a_tool",
        QUEUED,
        _started(),
        _text("Checking. "),
        ("tool.started", {"call_id": "c1", "name": "slow", "arguments": {}}),
        ("tool.failed", {"call_id": "c1", "error": "cancelled", "duration_ms": 40}),
        ("run.cancelled", {"reason": "cancelled by request", "usage": {"input_tokens": 1, "output_tokens": 1}}),
        tools=(("c1", "failed"),),
        ended="cancelled",
        text="Checking. ",
    ),
    _case(
        "failed_during_a_tool",
        QUEUED,
        _started(),
        _text("Checking. "),
        ("tool.started", {"call_id": "c1", "name": "lookup", "arguments": {"q": "x"}}),
        ("tool.failed", {"call_id": "c1", "error": "boom", "duration_ms": 2}),
        ("run.failed", {"error": {"type": "ProviderError", "message": "the model is down"}}),
        tools=(("c1", "failed"),),
        ended="failed",
        text="Checking. ",
    ),
    _case(
        "gap",  # the stream was trimmed past the run's start: ids 1-4 are gone
        QUEUED,
        _started(),
        _text("Lost "),
        _text("part. "),
        _text("Kept "),
        _text("text."),
        _completed("Lost part. Kept text."),
        first=5,
        text="Kept text.",
    ),
    _case(
        "restart",
        QUEUED,
        _started(),
        _text("Hello "),
        _text("wor"),
        RETRYING,
        _text("Hello "),
        _text("world."),
        _completed("Hello world."),
    ),
    _case("two_questions_at_once", *TWO_AT_ONCE, tools=BOTH_DELETED),
    _case("two_questions_at_once_answered_elsewhere", *TWO_AT_ONCE, tools=BOTH_DELETED, elsewhere=True),
    _case(
        "restart_before_a_question",
        QUEUED,
        _started(),
        _text("Before "),
        RETRYING,
        _text(BEFORE),
        _asked(),
        ANSWERED,
        _text("Done."),
        _completed(BEFORE + "Done."),
        tools=DELETED,
    ),
    # The scenario: killed after the answer, the agent (not @continues) starts over, its
    # question answered already (ctx.ask returns the answer, no new input.required).
    _case(
        "restart_after_an_answered_question",
        QUEUED,
        _started(),
        _text(BEFORE),
        _asked(),
        ANSWERED,
        _text("Then "),
        _text("more"),
        RETRYING,
        _text(BEFORE),
        ("tool.started", {"call_id": "call_1", "name": "delete_files", "arguments": {"count": 3}}),
        ("tool.completed", {"call_id": "call_1", "result": "deleted", "duration_ms": 1}),
        _text("Then "),
        _text("more."),
        _completed(BEFORE + "Then more."),
        tools=DELETED,
        responses_text=BEFORE + BEFORE + "Then more.",
        responses_tools=DELETED + DELETED,
    ),
    _case(
        "continued_keeping_all",
        QUEUED,
        _started(),
        _text("Hello "),
        _text("wor"),
        _continued(4),
        _text("ld."),
        _completed("Hello world."),
    ),
    _case(
        "continued_dropping_a_cut_turn",
        QUEUED,
        _started(),
        _text("Checking. "),
        ("tool.started", {"call_id": "c1", "name": "clock", "arguments": {}}),
        ("tool.completed", {"call_id": "c1", "result": "noon", "duration_ms": 1}),
        _text("It is "),
        _text("no"),
        _continued(5),
        _text("It is noon."),
        _completed("Checking. It is noon."),
        tools=(("c1", "completed"),),
    ),
    _case(
        "continued_keeping_all_before_a_question",
        QUEUED,
        _started(),
        _text("Before "),
        _continued(3),
        _text("the question. "),
        _asked(),
        ANSWERED,
        _text("Done."),
        _completed(BEFORE + "Done."),
        tools=DELETED,
    ),
    _case(
        "continued_dropping_text_before_a_question",
        QUEUED,
        _started(),
        _text("Before "),
        _text("the cut"),
        _continued(3),
        _text("the question. "),
        _asked(),
        ANSWERED,
        _text("Done."),
        _completed(BEFORE + "Done."),
        tools=DELETED,
    ),
    _case(
        "continued_keeping_all_after_an_answered_question",
        QUEUED,
        _started(),
        _text(BEFORE),
        _asked(),
        ANSWERED,
        _text("Do"),
        _continued(9),
        _text("ne."),
        _completed(BEFORE + "Done."),
        tools=DELETED,
    ),
    _case(
        "continued_dropping_text_after_an_answered_question",
        QUEUED,
        _started(),
        _text(BEFORE),
        _asked(),
        ANSWERED,
        _text("Cut te"),
        _continued(8),
        _text("Done."),
        _completed(BEFORE + "Done."),
        tools=DELETED,
    ),
]
# Every case with a question, answered on another device as well (the client comes back to it).
CASES += [replace(case, name=f"{case.name}_elsewhere", elsewhere=True) for case in CASES if "question" in case.name]


# -- a case as a session's stored events --------------------------------------------------------------


@dataclass
class Log:
    case: Case
    events: list[StoredEvent] = field(init=False)

    def __post_init__(self) -> None:
        self.events = [
            StoredEvent(seq, kind.encode(), json.dumps({"run_id": RUN, **data}).encode(), seq * 1000)
            for seq, (kind, data) in enumerate(self.case.events, start=1)
            if seq >= self.case.first
        ]

    @property
    def last(self) -> int:
        return len(self.case.events)

    def seqs(self, kind: str) -> list[int]:
        return [seq for seq, (k, _) in enumerate(self.case.events, start=1) if k == kind]

    def resumes(self) -> list[int]:
        """The ids of the answers that let the run go on: each one, or the last of those asked at once."""
        return [
            seq
            for seq, (kind, data) in enumerate(self.case.events, start=1)
            if kind == "input.received" and not data.get("waiting_for")
        ]

    def run_at(self, at: int) -> RunRecord:
        """The run's record once id `at` is stored: its status, attempt, questions and answers."""
        run = RunRecord(run_id=RUN, input="clean up")
        for seq, (kind, data) in enumerate(self.case.events[:at], start=1):
            if kind == "run.queued":
                run.queued_seq = seq
            elif kind in ("run.started", "run.continued"):
                run.status, run.attempt = "running", data["attempt"]
            elif kind == "input.required":
                question = Question.model_validate(data)
                run.asked.append(question)
                run.waiting_for.append(question.input_id)
                run.status = "waiting"
            elif kind == "input.received":
                run.answers[data["input_id"]] = data["answer"]
                run.waiting_for.remove(data["input_id"])
            elif kind in _STATUS_OF:
                run.status, run.finished_seq = _STATUS_OF[kind], seq
        return run

    def session_at(self, at: int) -> SessionRecord:
        """The session's record once id `at` is stored."""
        run = self.run_at(at)
        active = RUN if run.finished_seq is None else None
        return SessionRecord(session_id="s", created_at=0, runs=[run], active_run_id=active, last_event_id=at)

    def answered(self, at: int) -> frozenset[str]:
        """The run's questions answered by id `at` (the run record's `answers` then)."""
        return frozenset(
            data["input_id"]
            for seq, (kind, data) in enumerate(self.case.events, start=1)
            if kind == "input.received" and seq <= at
        )


@dataclass(frozen=True)
class Request:
    """A client's request: `kind` as the protocol has them; `at`: the last id stored when it is made (the
    session's state then); `after`: the position it resumes from; `until`: the last id it reads."""

    kind: str
    at: int
    after: int = -1
    until: int | None = None
    segment: int = 0
    within: int = 0  # AG-UI: the frames of the event after `after` the client has too
    last_event_id: str | None = None  # LangGraph: the header as the client sends it


Piece = tuple[int, bytes]  # the frames one stored event became, with its id


def serve(encoding: Any, log: Log, after: int, until: int | None, read: bool = False) -> list[Piece]:
    """What a stream opened after id `after` sends, event by event (as live notifications bring them;
    `read`: as catch-up reads do, the stream's entries as Redis sends them), until the encoding says it
    is finished or `until`."""
    stored = [event for event in log.events if event.seq > after and (until is None or event.seq <= until)]
    first = log.events[0].seq
    gap = Gap(reason="trimmed", first_available=first) if first > after + 1 else None
    head = encoding.head(gap)
    pieces: list[Piece] = []
    for event in stored:
        chunk = Chunk([event])
        if read:
            chunk = Chunk.of_entries([_entry(event)], len(event.data), chunk.terminal)
        pieces.append((event.seq, encoding.batch(Batch([chunk]))))
        if encoding.finished:
            break
    if not pieces:
        return [(after, head + encoding.tail())]
    pieces[0] = (pieces[0][0], head + pieces[0][1])
    pieces[-1] = (pieces[-1][0], pieces[-1][1] + encoding.tail())
    return pieces


def _entry(event: StoredEvent) -> list[Any]:
    """The stream entry of an event as Redis keeps it: a takeover's first event is the first entry after
    the reaper's fence, `<seq>-1` (lib/seqs.lua), the others `<seq>-0`."""
    entry = entry_of(event)
    if event.type in (b"run.continued", b"run.retrying"):
        entry[0] = b"%d-1" % event.seq
    return entry


# -- how the gateway builds each protocol's stream: ONE adapter per protocol ---------------------------


def ai_sdk_stream(log: Log, request: Request) -> list[Piece]:
    """gateway/protocols/ai_sdk/routes.py: `send`: a new message's run; `answer`: addToolApprovalResponse's send,
    which continues the message after the answer; `replay`: GET …/stream, the run from its start."""
    queued = log.seqs("run.queued")[0]
    if request.kind == "send":
        return serve(UiMessageStream(RUN), log, queued - 1, request.until)
    if request.kind == "answer":  # from the run's start, quiet up to the answer
        events = UiMessageStream(RUN, log.answered(request.at), opens=RUN, quiet_until=request.at)
        return serve(events, log, queued - 1, request.until)
    assert request.kind == "replay"
    return serve(UiMessageStream(RUN, log.answered(request.at)), log, queued - 1, request.until)


def ag_ui_stream(log: Log, request: Request) -> list[Piece]:
    """gateway/protocols/ag_ui/routes.py: `run`: POST a message; `resume`: POST with the interrupt's answer;
    `connect`: GET without an id; `reconnect`: GET with Last-Event-ID `after` (and `within`). A piece
    per frame: every frame has an id, so a connection may drop inside an event and resume there."""
    queued = log.seqs("run.queued")[0]
    answered = log.answered(request.at)
    if request.kind == "run":
        events = AgUiEvents("t", [], run_id=RUN)
    elif request.kind == "resume":  # from the run's start, quiet up to the answer
        events = AgUiEvents("t", [], run_id=RUN, quiet_until=request.at, answered=answered, continuing=True)
    elif request.kind == "connect":
        events = AgUiEvents("t", [], run_id=RUN, snapshot_first=True, answered=answered)
    else:
        assert request.kind == "reconnect"
        events = AgUiEvents("t", [], quiet_until=request.after, within=request.within, answered=answered)
    return _per_frame(serve(events, log, queued - 1, request.until))


def responses_stream(log: Log, request: Request) -> list[Piece]:
    """gateway/protocols/responses/routes.py: `create`: the response of segment `segment` (a request, or the answer
    to a question); `resume`: retrieve(stream=True, starting_after=`after`)."""
    queued = log.seqs("run.queued")[0]
    header = {"id": f"resp_{RUN}_{request.segment}", "model": "scripted", "metadata": {}, "created_at": 0}
    starting_after = request.after if request.kind == "resume" else -1
    events = ResponseEvents(RUN, request.segment, header, starting_after)
    return serve(events, log, queued - 1, request.until)


def native_stream(log: Log, request: Request) -> list[Piece]:
    """gateway/routes/events.py: the session's events after Last-Event-ID `after`, as a resume reads them."""
    return serve(NativeSse(1000), log, max(request.after, 0), request.until, read=True)


# What useStream asks for, its `toolProgress` read too (render.DEFAULT_MODES and `tools`).
LANGGRAPH_MODES = ("values", "messages-tuple", "updates", "custom", "tools")


def langgraph_stream(log: Log, request: Request) -> list[Piece]:
    """gateway/protocols/langgraph/v1/run_routes.py `_open_run`, in LANGGRAPH_MODES: `stream`: POST …/runs/stream
    (fresh: after the run's `run.queued`); `resume`: the same with `command: {resume}` (fresh: after the
    last answer's `input.received`, runs.resume_run's id); `join`: GET …/runs/{rid}/stream with
    `Last-Event-ID` (`-1`: from the run's start). A piece per frame: every frame has an id, so a
    connection may drop inside an event and resume there."""
    start = log.seqs("run.queued")[0] - 1
    fresh = request.kind in ("stream", "resume")
    if fresh:
        position: Position | None = Position(start if request.kind == "stream" else request.at)
    else:  # run_routes.py `_position`
        given = (request.last_event_id or "").strip()
        try:
            position = None if given in ("", "-1", "-") else Position.of(given)
        except InvalidLastEventId as error:  # a 422: the SDK's reconnect fails, and its stream with it
            raise ClientError(f"the join answered 422: {error}") from error
    has = position or Position(start)
    if has.after < start:
        has = Position(start)
    run = log.run_at(request.at)
    events = langgraph.LangGraphEvents(
        "t",
        RUN,
        LANGGRAPH_MODES,
        before=[event for event in log.events if event.seq <= start],
        runs=[RUN],
        quiet_until=has.after,
        within=has.within,
        answered=log.answered(request.at),
        opening={"run_id": RUN, "attempt": max(run.attempt, 1)} if position is None or fresh else None,
    )
    return _per_frame(serve(events, log, start, request.until))


V2_CHANNELS = ["messages", "tools", "lifecycle", "input", "values", "custom"]  # a ThreadStream's union filter


def langgraph_v2_stream(log: Log, request: Request) -> list[Piece]:
    """gateway/protocols/langgraph/v2/routes.py `stream_events` (its feed: v2/feed.py `V2Feed`): the
    thread's stream the SDK opens once `run.start` answered, V2_CHANNELS; after `Last-Event-ID` (PR
    #2805's reconnect), else from the thread's last run's start (1.15's, which drops by `event_id` what
    it had). It stays open across runs and questions (an answer is a command, `input.respond`): it
    reads to the log's end. A piece per envelope: each has an id."""
    cursor = None if request.last_event_id is None else Cursor.of(request.last_event_id)
    now = [request.at]  # what the store holds as the stream reads: what `values` are made of

    async def values_of(session_id: str) -> dict[str, Any]:
        events = [event for event in log.events if event.seq <= now[0]]
        return thread_values(log.session_at(now[0]), events)

    channels = StreamRequest(channels=V2_CHANNELS).filter()
    feed = V2Feed(cast(Any, None), log.session_at(request.at), channels, cursor, values_of, "langgraph-v2")

    async def pieces() -> list[Piece]:
        first = log.events[0].seq
        gap = Gap(reason="trimmed", first_available=first) if first > feed.start + 1 else None
        out = [(feed.start, sse_frame(part).encode()) for part in feed.renderer.opening(gap)]
        for event in log.events:
            if event.seq <= feed.start or (request.until is not None and event.seq > request.until):
                continue
            now[0] = max(request.at, event.seq)
            parts = [part for rendered, _ in feed.renderer.rendered(Batch([Chunk([event])])) for part in rendered]
            parts += await feed._values()  # noqa: SLF001 (the feed's own values, as its batches() adds them)
            out += [(event.seq, sse_frame(part).encode()) for part in parts]
        return out or [(feed.start, b"")]

    return asyncio.run(pieces())


def _per_frame(pieces: list[Piece]) -> list[Piece]:
    framed: list[Piece] = []
    for seq, body in pieces:
        framed += [(seq, frame + b"\n\n") for frame in body.split(b"\n\n") if frame] or [(seq, body)]
    return framed


# -- each protocol's client: its requests, and how it resumes -----------------------------------------


@dataclass(frozen=True)
class Step:
    request: Request
    begin: Callable[[Any], None]  # what the client does as it makes the request


def _nothing(client: Any) -> None:
    pass


def _approve_and_send(chat: AiSdkChat) -> None:
    chat.answer_approval()
    chat.send()


def _closed_quietly(client: Any, log: Log, at: int) -> None:
    pass


@dataclass(frozen=True)
class Protocol:
    name: str
    client: Callable[[], Any]
    stream: Callable[[Log, Request], list[Piece]]
    journey: Callable[[Log], list[Step]]
    reconnect: Callable[[Any, Request, int, int], Step]  # client, the request cut, the id cut at, its end
    # What the client does once a response ended, the last id it read being `at` (LangGraph's SDKs ask
    # for the run's status).
    closed: Callable[[Any, Log, int], None] = _closed_quietly
    reasoning: bool = True  # it shows the run's reasoning (LangGraph's messages have none)


def _ai_sdk_journey(log: Log) -> list[Step]:
    steps = [Step(Request("send", log.seqs("run.queued")[0]), lambda chat: chat.send())]
    if log.case.elsewhere:  # the page learns of each answer and resumes (resumeStream)
        return steps + [
            Step(Request("replay", received), lambda chat: chat.resume()) for received in log.seqs("input.received")
        ]
    return steps + [Step(Request("answer", received), _approve_and_send) for received in log.resumes()]


def _reload_and_connect(agent: AgUiAgent) -> None:
    agent.reload()
    agent.connect()


def _ag_ui_journey(log: Log) -> list[Step]:
    steps = [Step(Request("run", log.seqs("run.queued")[0]), lambda agent: agent.run())]
    if log.case.elsewhere:  # answered elsewhere: the page, reloaded at each answer, calls connectAgent()
        return steps + [
            Step(Request("connect", received), _reload_and_connect) for received in log.seqs("input.received")
        ]
    # runAgent({resume: [...]}), once every question has its answer
    return steps + [
        Step(Request("resume", received), lambda agent: agent.run(answering=True)) for received in log.resumes()
    ]


def _ag_ui_reconnect(agent: AgUiAgent, cut: Request, at: int, end: int) -> Step:
    if agent.last_event_id is None:
        raise ClientError("TokentailAgent cannot resume: no event id received yet")
    position = Position.of(agent.last_event_id)
    return Step(Request("reconnect", at, after=position.after, within=position.within, until=end), _nothing)


def _responses_journey(log: Log) -> list[Step]:
    starts = [log.seqs("run.queued")[0], *log.resumes()]
    return [Step(Request("create", at, segment=s), lambda client: client.create()) for s, at in enumerate(starts)]


def _langgraph_journey(log: Log) -> list[Step]:
    steps = [Step(Request("stream", log.seqs("run.queued")[0]), lambda client: client.submit())]
    if log.case.elsewhere:  # the page learns of each answer and joins the run: joinStream(runId), from its start
        return steps + [
            Step(Request("join", received, last_event_id="-1"), lambda client: client.join())
            for received in log.seqs("input.received")
        ]
    # submit(undefined, {command: {resume}}) once every question has its answer (one request answers all)
    return steps + [Step(Request("resume", received), lambda client: client.submit()) for received in log.resumes()]


def _langgraph_reconnect(client: LangGraphClient, cut: Request, at: int, end: int) -> Step:
    """The SDK's reconnect: GET of the response's `Location` (the run's stream) with `Last-Event-ID`."""
    if client.last_event_id is None:
        raise ClientError("the SDK reconnects without Last-Event-ID: no frame had an id")
    return Step(Request("join", at, last_event_id=client.last_event_id, until=end), _nothing)


def _langgraph_closed(client: LangGraphClient, log: Log, at: int) -> None:
    """A stream closed with no `end`: the SDK asks `GET …/runs/{rid}` (runs.py `run_status`)."""
    session = log.session_at(at)
    client.closed(run_status(session.runs[0], session))


def _langgraph_v2_reconnect(client: LangGraphV2Client, cut: Request, at: int, end: int) -> Step:
    """PR #2805's client: the same request again, with `Last-Event-ID` the last durable id it had (none
    yet: without, as 1.15 does)."""
    return Step(Request("stream", at, last_event_id=client.last_event_id, until=end), _nothing)


PROTOCOLS = [
    Protocol(
        "native",
        NativeClient,
        native_stream,
        lambda log: [Step(Request("events", 0, after=0), _nothing)],
        lambda client, cut, at, end: Step(Request("events", at, after=client.last_event_id, until=end), _nothing),
    ),
    Protocol(
        "ai_sdk",
        AiSdkChat,
        ai_sdk_stream,
        _ai_sdk_journey,
        lambda chat, cut, at, end: Step(Request("replay", at, until=end), lambda chat: chat.resume()),
    ),
    Protocol("ag_ui", AgUiAgent, ag_ui_stream, _ag_ui_journey, _ag_ui_reconnect),
    Protocol(
        "responses",
        ResponsesClient,
        responses_stream,
        _responses_journey,
        lambda client, cut, at, end: Step(
            replace(cut, kind="resume", at=at, after=client.last_sequence, until=end), _nothing
        ),
    ),
    Protocol(
        "langgraph_v2",
        LangGraphV2Client,
        langgraph_v2_stream,
        lambda log: [Step(Request("stream", log.seqs("run.queued")[0]), _nothing)],
        _langgraph_v2_reconnect,
    ),
    Protocol(  # the SDK as released: its reconnect posts the same request again, with no cursor
        "langgraph_v2_replay",
        LangGraphV2Client,
        langgraph_v2_stream,
        lambda log: [Step(Request("stream", log.seqs("run.queued")[0]), _nothing)],
        lambda client, cut, at, end: Step(Request("stream", at, until=end), _nothing),
    ),
    Protocol(
        "langgraph",
        LangGraphClient,
        langgraph_stream,
        _langgraph_journey,
        _langgraph_reconnect,
        closed=_langgraph_closed,
        reasoning=False,
    ),
]


def _feed(client: Any, pieces: list[Piece]) -> None:
    for _, body in pieces:
        for frame in parse_sse(body):
            client.feed(frame)


def play(protocol: Protocol, log: Log, cut: tuple[int, int] | None = None) -> Shown:
    """The case as the protocol's client plays it; with `cut` (request k, piece i), the connection of
    request k drops after its first i events' frames and the client resumes as it does."""
    client = protocol.client()
    for k, step in enumerate(protocol.journey(log)):
        step.begin(client)
        pieces = protocol.stream(log, step.request)
        if cut is None or cut[0] != k:
            _feed(client, pieces)
            protocol.closed(client, log, max(pieces[-1][0], step.request.at))
            continue
        _feed(client, pieces[: cut[1]])
        # It reconnects once it has the event: no sooner than its request was made (a replay reads
        # events older than that).
        at = max(pieces[cut[1] - 1][0], step.request.at)
        resumed = protocol.reconnect(client, step.request, at, pieces[-1][0])
        resumed.begin(client)
        pieces = protocol.stream(log, resumed.request)
        _feed(client, pieces)
        protocol.closed(client, log, max(pieces[-1][0], resumed.request.at))
    shown: Shown = client.shown()
    return shown


def cuts(protocol: Protocol, log: Log) -> list[tuple[int, int]]:
    """Every place a connection can drop: after each event of each request but its last."""
    return [
        (k, i)
        for k, step in enumerate(protocol.journey(log))
        for i in range(1, len(protocol.stream(log, step.request)))
    ]


# -- the tests ----------------------------------------------------------------------------------------

# Each protocol's cases carry its marker (`-m responses`); tokentail's own has none.
MARKS = {
    "ai_sdk": pytest.mark.ai_sdk,
    "ag_ui": pytest.mark.ag_ui,
    "responses": pytest.mark.responses,
    "langgraph": pytest.mark.langgraph,
    "langgraph_v2": pytest.mark.langgraph,
    "langgraph_v2_replay": pytest.mark.langgraph,
}

CASES_AND_PROTOCOLS = [
    pytest.param(
        case,
        protocol,
        id=f"{case.name}-{protocol.name}",
        marks=[MARKS[protocol.name]] if protocol.name in MARKS else [],
    )
    for case in CASES
    for protocol in PROTOCOLS
]


@pytest.mark.parametrize(("case", "protocol"), CASES_AND_PROTOCOLS)
def test_a_client_shows_the_run_s_output_each_piece_once(case: Case, protocol: Protocol) -> None:
    shown = play(protocol, Log(case))
    responses = protocol.name == "responses" and case.responses_text is not None
    assert shown.text == (case.responses_text if responses else case.expected_text)
    assert shown.reasoning == (case.reasoning if protocol.reasoning else "")
    assert shown.tools == (case.responses_tools if responses else case.tools)
    assert shown.ended == case.ended
    assert shown.gap == (case.first > 1)
    assert not shown.glitches


@pytest.mark.parametrize(("case", "protocol"), CASES_AND_PROTOCOLS)
def test_a_client_resumed_after_any_event_shows_what_it_would_have_shown(case: Case, protocol: Protocol) -> None:
    log = Log(case)
    whole = play(protocol, log)
    wrong = []
    for cut in cuts(protocol, log):
        try:
            resumed = play(protocol, log, cut)
        except ClientError as error:
            wrong.append(f"cut {cut}: the client failed: {error}")
            continue
        if resumed != whole:
            wrong.append(f"cut {cut}: {resumed}")
    assert not wrong, f"uninterrupted: {whole}\n" + "\n".join(wrong)
