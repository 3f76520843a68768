"""The compacted catch-up (gateway/reading/snapshot.py): what a client keeps from a snapshot and the
events after it is what it keeps from every event, whatever retries and takeovers cut."""

import json
import random
from typing import Any

from tokentail.gateway.reading.snapshot import Compactor
from tokentail.shared.store.reads import StoredEvent
from tokentail.shared.vocabulary.events import MessageDelta
from tokentail.shared.vocabulary.run_log import RunLog


class Session:
    """A session's stream, written event by event."""

    def __init__(self) -> None:
        self.events: list[StoredEvent] = []

    def add(self, event_type: str, **data: Any) -> int:
        seq = len(self.events) + 1
        self.events.append(StoredEvent(seq, event_type.encode(), json.dumps(data, separators=(",", ":")).encode(), 0))
        return seq

    def turn(self, run_id: str, text: str, *, ends: bool = True) -> None:
        self.add("run.queued", run_id=run_id, input="hi")
        self.add("run.started", run_id=run_id, attempt=1)
        for char in text:
            self.add("message.delta", run_id=run_id, text=char)
        if ends:
            self.add("run.completed", run_id=run_id, output=text, usage={})


def compacted(events: list[StoredEvent], after: int = 0) -> tuple[list[StoredEvent], int]:
    """The events a client gets from one snapshot of `events` after `after`, and the snapshot's id."""
    compactor = Compactor(after)
    compactor.add([event for event in events if event.seq > after])
    snapshot = compactor.take()
    frames = json.loads(snapshot.data)["events"]
    kept = [StoredEvent(f["id"], f["event"].encode(), json.dumps(f["data"]).encode(), 0) for f in frames]
    return kept, snapshot.up_to


def as_received(events: list[StoredEvent], after: int = 0) -> list[tuple[int, str, bytes]]:
    """A snapshot after `after`, then every event after its id: what a client applies, in order."""
    kept, up_to = compacted(events, after)
    earlier = [event for event in events if event.seq <= after]
    rest = [event for event in events if event.seq > up_to]
    return [(e.seq, e.type.decode(), e.data) for e in earlier + kept + rest]


def texts(events: list[tuple[int, str, bytes]], run_ids: list[str]) -> dict[str, str]:
    return {run_id: RunLog.of(run_id, events).text for run_id in run_ids}


def test_each_finished_turn_becomes_a_few_events_with_the_id_of_its_last() -> None:
    session = Session()
    session.turn("r1", "hello")
    session.turn("r2", "world!")
    kept, up_to = compacted(session.events)
    assert up_to == len(session.events)
    assert [(e.seq, e.type.decode()) for e in kept] == [
        (1, "run.queued"),
        (2, "run.started"),
        (7, "message.delta"),
        (8, "run.completed"),
        (9, "run.queued"),
        (10, "run.started"),
        (16, "message.delta"),
        (17, "run.completed"),
    ]
    assert json.loads(kept[2].data) == {"run_id": "r1", "text": "hello"}


def test_a_running_attempt_is_left_out_for_the_feed_to_send_as_it_is() -> None:
    session = Session()
    session.turn("r1", "done")
    session.turn("r2", "going on", ends=False)
    kept, up_to = compacted(session.events)
    # r2 may yet be cut back to any of its deltas by a run.continued: its segment is not merged.
    assert up_to == 8 and kept[-1].type == b"run.queued"  # r2's queued event comes before its start
    assert [seq for seq, _, _ in as_received(session.events)][4:] == list(range(8, len(session.events) + 1))


def test_deltas_of_different_agents_or_kinds_stay_apart() -> None:
    session = Session()
    session.add("run.queued", run_id="r1", input="hi")
    session.add("run.started", run_id="r1", attempt=1)
    session.add("reasoning.delta", run_id="r1", text="hm")
    session.add("reasoning.delta", run_id="r1", text="m")
    session.add("message.delta", run_id="r1", text="a", agent="x")
    session.add("message.delta", run_id="r1", text="b", agent="y")
    session.add("message.delta", run_id="r1", text="c", agent="y")
    session.add("run.completed", run_id="r1", output="abc", usage={})
    kept, _ = compacted(session.events)
    assert [(e.type.decode(), json.loads(e.data).get("text")) for e in kept[2:-1]] == [
        ("reasoning.delta", "hmm"),
        ("message.delta", "a"),
        ("message.delta", "bc"),
    ]


def test_what_a_retry_or_a_continuation_drops_is_not_sent() -> None:
    session = Session()
    session.add("run.queued", run_id="r1", input="hi")
    session.add("run.started", run_id="r1", attempt=1)
    for char in "dead":
        session.add("message.delta", run_id="r1", text=char)
    session.add("run.retrying", run_id="r1", attempt=2, reason="worker lost")
    session.add("run.started", run_id="r1", attempt=2, reason="takeover")
    kept_until = session.add("message.delta", run_id="r1", text="ke")
    session.add("message.delta", run_id="r1", text="pt")
    session.add("message.delta", run_id="r1", text="cut")
    session.add("run.continued", run_id="r1", attempt=3, from_event_id=kept_until + 1)
    session.add("message.delta", run_id="r1", text="!")
    session.add("run.completed", run_id="r1", output="kept!", usage={})
    kept, _ = compacted(session.events)
    shown = [(e.type.decode(), json.loads(e.data).get("text")) for e in kept]
    assert ("message.delta", "dead") not in shown and ("message.delta", "kept") in shown
    assert all("cut" not in (text or "") for _, text in shown)
    assert texts(as_received(session.events), ["r1"]) == {"r1": "kept!"}


def random_session(rng: random.Random, runs: int) -> Session:
    """Runs with text, reasoning, tools, retries, continuations and forks' starts cutting anywhere, a question."""
    session = Session()
    for number in range(runs):
        run_id = f"r{number}"
        session.add("run.queued", run_id=run_id, input="hi")
        session.add("run.started", run_id=run_id, attempt=1)
        attempt, since_start = 1, []
        for _ in range(rng.randint(0, 30)):
            roll = rng.random()
            if roll < 0.6:
                since_start.append(session.add("message.delta", run_id=run_id, text=rng.choice("abcdef") * 2))
            elif roll < 0.7:
                session.add("reasoning.delta", run_id=run_id, text="r")
            elif roll < 0.8:
                call = f"c{len(session.events)}"
                session.add("tool.started", run_id=run_id, call_id=call, name="t", arguments={})
                session.add("tool.completed", run_id=run_id, call_id=call, result=1, duration_ms=1)
            elif roll < 0.84 and since_start:
                attempt += 1
                cut = rng.choice(since_start)
                session.add("run.continued", run_id=run_id, attempt=attempt, from_event_id=cut)
            elif roll < 0.87 and since_start:  # as a fork at an event of the run goes on (its copy, then this)
                cut = rng.choice(since_start)
                session.add("run.started", run_id=run_id, attempt=1, reason="fork", from_event_id=cut)
            elif roll < 0.92:
                attempt += 1
                session.add("run.retrying", run_id=run_id, attempt=attempt, reason="lost")
                session.add("run.started", run_id=run_id, attempt=attempt, reason="takeover")
                since_start = []
            elif roll < 0.96:
                session.add("input.required", run_id=run_id, input_id="in1", kind="text", prompt="?", schema={})
                session.add("input.received", run_id=run_id, input_id="in1", answer="x")
                session.add("run.started", run_id=run_id, attempt=attempt, reason="resume")
                since_start = []
            else:
                session.add("status", run_id=run_id, text="busy")
        if number < runs - 1 or rng.random() < 0.5:
            session.add("run.completed", run_id=run_id, output="", usage={})
    return session


def test_a_client_keeps_the_same_text_from_a_snapshot_as_from_every_event() -> None:
    rng = random.Random(30)
    for _ in range(300):
        session = random_session(rng, rng.randint(1, 5))
        run_ids = sorted({json.loads(e.data)["run_id"] for e in session.events})
        raw = [(e.seq, e.type.decode(), e.data) for e in session.events]
        expected = texts(raw, run_ids)
        after = rng.choice([0, rng.randint(0, len(session.events))])  # from the start, or from anywhere
        received = as_received(session.events, after)
        assert texts(received, run_ids) == expected
        assert [seq for seq, _, _ in received] == sorted({seq for seq, _, _ in received})  # in order, once
        assert len(received) <= len(raw)


def test_a_long_session_goes_as_several_snapshots_that_join_up() -> None:
    session = Session()
    for number in range(20):
        session.turn(f"r{number}", "x" * 50)
    compactor = Compactor(0)
    snapshots = []
    for event in session.events:
        compactor.add([event])
        if compactor.ready_bytes >= 300:
            snapshots.append(compactor.take())
    if compactor.ready_bytes:
        snapshots.append(compactor.take())
    assert len(snapshots) > 3
    frames = [frame for snapshot in snapshots for frame in json.loads(snapshot.data)["events"]]
    assert [frame["id"] for frame in frames] == sorted(frame["id"] for frame in frames)
    assert snapshots[-1].up_to == len(session.events)
    for snapshot, following in zip(snapshots, snapshots[1:], strict=False):
        assert json.loads(following.data)["events"][0]["id"] > snapshot.up_to


def test_deltas_join_as_written_whatever_their_text_holds() -> None:
    texts = ['say "hi"', "back\\slash\\", '\\"', "é 😀\n", '","text":"', "plain"]
    for agent in (None, "planner"):
        session = Session()
        session.add("run.queued", run_id="r1", input="hi")
        session.add("run.started", run_id="r1", attempt=1)
        for text in texts:  # as the worker writes them (compact, text last), and in another form
            compact = MessageDelta(run_id="r1", text=text, agent=agent).model_dump_json()
            session.events.append(StoredEvent(len(session.events) + 1, b"message.delta", compact.encode(), 0))
            session.add("message.delta", run_id="r1", text=text, **({"agent": agent} if agent else {}))
        session.add("run.completed", run_id="r1", output="", usage={})
        kept, _ = compacted(session.events)
        assert [e.type for e in kept] == [b"run.queued", b"run.started", b"message.delta", b"run.completed"]
        merged = json.loads(kept[2].data)
        assert merged == {"run_id": "r1", "text": "".join(t + t for t in texts), **({"agent": agent} if agent else {})}


def random_tree(rng: random.Random) -> Session:
    """A session run and the sub-agent runs it spawned, streaming side by side, any of them taken over
    (a continuation cutting back to any of its events since its last start) while the others go on."""
    session = Session()
    session.add("run.queued", run_id="p", input="hi")
    session.add("run.started", run_id="p", attempt=1)
    going, attempts = ["p"], {"p": 1}
    since_start: dict[str, list[int]] = {"p": []}
    for _ in range(rng.randint(5, 60)):
        run_id = rng.choice(going)
        roll = rng.random()
        if roll < 0.6:
            since_start[run_id].append(session.add("message.delta", run_id=run_id, text=rng.choice("abc") * 2))
        elif roll < 0.72 and len(going) < 4:
            child = f"c{len(session.events)}"
            call = f"call_{child}"
            session.add("tool.started", run_id=run_id, call_id=call, name="helper", arguments={"input": "x"})
            cause = {"type": "tool_call", "call_id": call}
            session.add("run.spawned", run_id=child, parent_run_id=run_id, agent="h", name="h", input="x", cause=cause)
            session.add("run.started", run_id=child, attempt=1, parent_run_id=run_id)
            going.append(child)
            since_start[child], attempts[child] = [], 1
        elif roll < 0.82 and since_start[run_id]:
            attempts[run_id] += 1
            cut = rng.choice(since_start[run_id])
            session.add("run.continued", run_id=run_id, attempt=attempts[run_id], from_event_id=cut)
        elif roll < 0.9 and run_id != "p":
            session.add("run.completed", run_id=run_id, output="", usage={}, parent_run_id="p")
            going.remove(run_id)
        else:
            session.add("run.started", run_id=run_id, attempt=attempts[run_id], reason="resume")
            since_start[run_id] = []
    if rng.random() < 0.5:
        for run_id in going:
            session.add("run.completed", run_id=run_id, output="", usage={})
    return session


def test_sub_agent_runs_side_by_side_keep_the_same_text_from_a_snapshot_as_from_every_event() -> None:
    # A run's start or end closed the segment of every run: a continuation of another run still going
    # then cut back into deltas already joined, and a client dropped the text before the cut with them.
    rng = random.Random(72)
    for _ in range(300):
        session = random_tree(rng)
        run_ids = sorted({json.loads(e.data)["run_id"] for e in session.events})
        raw = [(e.seq, e.type.decode(), e.data) for e in session.events]
        after = rng.choice([0, rng.randint(0, len(session.events))])
        received = as_received(session.events, after)
        assert texts(received, run_ids) == texts(raw, run_ids)
        assert [seq for seq, _, _ in received] == sorted({seq for seq, _, _ in received})
