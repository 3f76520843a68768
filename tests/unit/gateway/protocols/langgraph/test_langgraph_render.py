"""LangGraph's streams resumed at any frame id: what a stream reopened after an id sends is exactly what
the uncut stream sent after that frame, byte for byte (v1: every frame's `id`, render.py `Position`;
v2: every durable `event_id` `<ms>-<seq>`, the ids langgraphjs PR #2805's client sends back, v2/render.py
`Cursor`). The table of cases (../test_protocol_cases.py) judges what the clients end up showing; this
judges the frames, for every case of its table, so a defect it finds is named by the frame at fault.
Streams are built as the routes build them, by that module's adapters."""

import pytest

from tests.clients.protocol_clients import parse_sse
from tests.unit.gateway.protocols.test_protocol_cases import (
    CASES,
    Case,
    Log,
    Piece,
    Request,
    langgraph_stream,
    langgraph_v2_stream,
)
from tokentail.shared.vocabulary.errors import InvalidLastEventId

pytestmark = pytest.mark.langgraph


def _frames(pieces: list[Piece]) -> list[tuple[str | None, str | None, str]]:
    return [(frame.id, frame.event, frame.data) for _, body in pieces for frame in parse_sse(body)]


def _after_each_id(pieces: list[Piece], ids: str) -> list[tuple[int, str, int]]:
    """(index in the stream, the frame's id, the last event id stored when it was sent) of each frame
    with an id a client sends back (`ids`: `any`, or `durable`: `<ms>-<seq>` only)."""
    out, index = [], 0
    for seq, body in pieces:
        for frame in parse_sse(body):
            durable = frame.id is not None and "." not in frame.id
            if frame.id is not None and (ids == "any" or durable):
                out.append((index, frame.id, seq))
            index += 1
    return out


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name) for case in CASES])
def test_a_v1_run_stream_joined_after_any_frame_sends_the_rest_of_it(case: Case) -> None:
    """GET …/runs/{rid}/stream with `Last-Event-ID` of any frame of the POST's stream (a run's first)."""
    log = Log(case)
    first = Request("stream", log.seqs("run.queued")[0])
    whole = langgraph_stream(log, first)
    frames = _frames(whole)
    wrong = []
    for index, frame_id, seq in _after_each_id(whole, "any"):
        join = Request("join", max(seq, first.at), last_event_id=frame_id, until=whole[-1][0])
        try:
            rest = _frames(langgraph_stream(log, join))
        except InvalidLastEventId as error:
            wrong.append(f"after {frame_id}: 422 {error}")
            continue
        if rest != frames[index + 1 :]:
            wrong.append(f"after {frame_id}: sent {rest}, the stream had {frames[index + 1 :]}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name) for case in CASES])
def test_a_v2_stream_reopened_after_any_durable_id_sends_the_rest_of_it(case: Case) -> None:
    """POST …/stream/events again with `Last-Event-ID` of any durable `event_id` the stream sent."""
    log = Log(case)
    first = Request("stream", log.seqs("run.queued")[0])
    whole = langgraph_v2_stream(log, first)
    frames = _frames(whole)
    wrong = []
    for index, event_id, seq in _after_each_id(whole, "durable"):
        again = Request("stream", max(seq, first.at), last_event_id=event_id, until=whole[-1][0])
        rest = _frames(langgraph_v2_stream(log, again))
        if rest != frames[index + 1 :]:
            wrong.append(
                f"after {event_id}: sent {[f[0] for f in rest]}, the stream had {[f[0] for f in frames[index + 1 :]]}"
            )
    assert not wrong, "\n".join(wrong)


def test_a_v2_stream_reopened_after_a_durable_id_inside_a_run_sends_the_rest_of_it() -> None:
    """The same, for every durable id but the run's last one: the envelopes inside a run resume exactly."""
    log = Log(next(case for case in CASES if case.name == "parallel_tool_calls"))
    first = Request("stream", log.seqs("run.queued")[0])
    whole = langgraph_v2_stream(log, first)
    frames = _frames(whole)
    checked = _after_each_id(whole, "durable")[:-1]
    assert len(checked) > 5
    for index, event_id, seq in checked:
        again = Request("stream", max(seq, first.at), last_event_id=event_id, until=whole[-1][0])
        assert _frames(langgraph_v2_stream(log, again)) == frames[index + 1 :], event_id
