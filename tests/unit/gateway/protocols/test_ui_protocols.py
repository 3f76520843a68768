"""The UI protocol encodings: what a run's stored events become, for the AI SDK and for AG-UI.

Every AG-UI event made is validated by `ag_ui.core`'s own models; the Node tests (tests/node) check
both encodings against the real JavaScript clients."""

import json
from typing import Any

import pytest
from ag_ui.core import Event
from pydantic import TypeAdapter

from tokentail.gateway.live.chunk import Chunk
from tokentail.gateway.protocols.ag_ui.render import AgUiEvents, protocol_version, thread_messages
from tokentail.gateway.protocols.ag_ui.tanstack import canonical_json, schema_hash
from tokentail.gateway.protocols.ai_sdk.render import UiMessageStream
from tokentail.gateway.reading.feed import Batch
from tokentail.gateway.reading.renderer import FramedRenderer, Position
from tokentail.gateway.reading.streams import SSE_PING
from tokentail.shared.store.reads import StoredEvent
from tokentail.shared.vocabulary.errors import InvalidLastEventId
from tokentail.shared.vocabulary.events import Gap
from tokentail.shared.vocabulary.records import RunRecord

pytestmark = [pytest.mark.ai_sdk, pytest.mark.ag_ui]


RUN = "r_one"
EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("run.queued", {"input": "weather?"}),
    ("run.started", {"attempt": 1}),
    ("message.delta", {"text": "Lost "}),
    ("run.retrying", {"attempt": 2, "reason": "worker lost"}),
    ("run.started", {"attempt": 2}),
    ("reasoning.delta", {"text": "Think."}),
    ("status", {"text": "Looking"}),
    ("tool.started", {"call_id": "c1", "name": "lookup", "arguments": {"q": "weather?"}}),
    ("tool.completed", {"call_id": "c1", "result": {"found": 3}, "duration_ms": 5}),
    ("tool.started", {"call_id": "c2", "name": "broken", "arguments": {}}),
    ("tool.failed", {"call_id": "c2", "error": "boom", "duration_ms": 1}),
    ("data.chart", {"data": {"points": [1, 2]}}),
    ("message.delta", {"text": "Sunny"}),
    ("message.delta", {"text": "."}),
    ("run.completed", {"output": "Sunny.", "usage": {"input_tokens": 3, "output_tokens": 2}}),
]


def stored(events: list[tuple[str, dict[str, Any]]], run_id: str = RUN, first: int = 1) -> list[StoredEvent]:
    return [
        StoredEvent(seq, kind.encode(), json.dumps({"run_id": run_id, **data}).encode(), 0)
        for seq, (kind, data) in enumerate(events, start=first)
    ]


def sse_data(body: bytes) -> list[Any]:
    frames = [frame for frame in body.decode().split("\n\n") if frame]
    return [json.loads(line[6:]) for frame in frames for line in frame.split("\n") if line.startswith("data: {")]


def translate(translation: FramedRenderer[Any], events: list[StoredEvent], gap: Gap | None = None) -> bytes:
    return translation.head(gap) + translation.batch(Batch([Chunk(events)]))


def test_ai_sdk_parts_of_a_run_with_a_retry_tools_and_data() -> None:
    translation = UiMessageStream(RUN)
    parts = sse_data(translate(translation, stored(EVENTS)))
    assert [part["type"] for part in parts] == [
        "start", "start-step", "text-start", "text-delta",
        "reset-step", "start-step", "reasoning-start", "reasoning-delta", "data-status",
        "reasoning-end", "tool-input-start", "tool-input-available", "tool-output-available",
        "tool-input-start", "tool-input-available", "tool-output-error", "data-chart",
        "text-start", "text-delta", "text-delta", "text-end", "finish-step", "finish",
    ]  # fmt: skip
    assert parts[0] == {"type": "start", "messageId": RUN}
    assert parts[11] == {
        "type": "tool-input-available",
        "toolCallId": "c1",
        "toolName": "lookup",
        "input": {"q": "weather?"},
    }
    assert parts[15] == {"type": "tool-output-error", "toolCallId": "c2", "errorText": "boom"}
    # Ids come from event ids: the block after the retry is a new one, and a replay names it the same.
    assert parts[2]["id"] != parts[17]["id"] == parts[20]["id"]
    assert parts[-1]["messageMetadata"] == {"run_id": RUN, "usage": {"input_tokens": 3, "output_tokens": 2}}
    assert translation.finished and translation.tail() == b"data: [DONE]\n\n"
    assert parts == sse_data(translate(UiMessageStream(RUN), stored(EVENTS)))


@pytest.mark.parametrize(
    ("ending", "last"),
    [
        (("run.cancelled", {"reason": "cancelled by request"}), {"type": "abort", "reason": "cancelled by request"}),
        (
            ("run.failed", {"error": {"type": "provider_error", "message": "429"}}),
            {"type": "error", "errorText": "provider_error: 429"},
        ),
    ],
)  # fmt: skip
def test_ai_sdk_ends_an_open_text_before_a_cancel_or_a_failure(
    ending: tuple[str, dict[str, Any]], last: dict[str, Any]
) -> None:
    parts = sse_data(translate(UiMessageStream(RUN), stored([*EVENTS[:3], ending])))
    assert [part["type"] for part in parts[-2:]] == ["text-end", last["type"]]
    assert parts[-1] == last


def test_a_run_scoped_stream_skips_other_runs_and_ends_at_its_own_end() -> None:
    before = stored([("run.queued", {"input": "other"}), ("message.delta", {"text": "no"})], run_id="r_other")
    ours = stored(EVENTS, first=3)
    after = stored([("run.queued", {"input": "next"})], run_id="r_next", first=3 + len(EVENTS))
    for translation in (UiMessageStream(RUN), AgUiEvents("t", [], run_id=RUN)):
        body = translate(translation, before + ours + after)
        assert b"r_other" not in body and b"r_next" not in body and b"no" not in body
        assert translation.finished


def test_gaps_and_heartbeats_are_said_in_each_protocol() -> None:
    gap = Gap(reason="trimmed", first_available=9)
    assert sse_data(UiMessageStream(RUN).head(gap)) == [
        {"type": "data-gap", "data": {"reason": "trimmed", "first_available": 9}, "transient": True}
    ]
    # Every AG-UI event belongs to a run: a gap before the first one is said after its RUN_STARTED.
    ag_ui = AgUiEvents("t", [])
    assert ag_ui.head(gap) == b""
    after = sse_data(ag_ui.batch(Batch([Chunk(stored([("message.delta", {"text": "lo"})], first=9))])))
    assert [event["type"] for event in after] == ["RUN_STARTED", "CUSTOM", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT"]
    assert after[1] == {"type": "CUSTOM", "name": "gap", "value": {"reason": "trimmed", "first_available": 9}}
    assert UiMessageStream(RUN).batch(Batch()) == AgUiEvents("t", []).batch(Batch()) == SSE_PING


AG_UI_EVENT = TypeAdapter(Event)


def test_ag_ui_events_of_a_run_validate_and_drop_the_dead_attempt() -> None:
    history = thread_messages([RunRecord(run_id="r_zero", input="hi", output="Hello", status="completed")])
    body = translate(AgUiEvents("thread-1", history, run_id=RUN), stored(EVENTS))
    events = sse_data(body)
    for event in events:
        AG_UI_EVENT.validate_python(event)  # AG-UI's own schema
    assert [event["type"] for event in events] == [
        "RUN_STARTED", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END", "MESSAGES_SNAPSHOT",
        "REASONING_START", "REASONING_MESSAGE_START", "REASONING_MESSAGE_CONTENT", "ACTIVITY_SNAPSHOT",
        "REASONING_MESSAGE_END", "REASONING_END", "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END",
        "TOOL_CALL_RESULT", "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "TOOL_CALL_RESULT", "CUSTOM",
        "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END", "RUN_FINISHED",
    ]  # fmt: skip
    assert events[0] == {"type": "RUN_STARTED", "threadId": "thread-1", "runId": RUN, "protocolVersion": "1.1"}
    assert events[8] == {
        "type": "ACTIVITY_SNAPSHOT",
        "messageId": f"{RUN}-status",
        "activityType": "status",
        "content": {"text": "Looking"},
    }  # no `replace`: each replaces the last
    # The snapshot on the takeover is the thread without the dead attempt's "Lost ".
    assert events[4]["messages"] == [
        {"id": "r_zero-input", "role": "user", "content": "hi"},
        {"id": "r_zero", "role": "assistant", "content": "Hello"},
        {"id": f"{RUN}-input", "role": "user", "content": "weather?"},
    ]
    assert json.loads(events[12]["delta"]) == {"q": "weather?"}
    assert json.loads(events[18]["content"]) == {"error": "boom"}
    assert events[19] == {"type": "CUSTOM", "name": "chart", "value": {"points": [1, 2]}}
    assert events[-1]["outcome"] == {"type": "success"}
    assert events[-1]["usage"] == [{"inputTokens": 3, "outputTokens": 2}]


def test_ag_ui_frames_each_carry_an_id_the_last_of_an_event_its_own() -> None:
    body = translate(AgUiEvents("t", [], run_id=RUN), stored(EVENTS[:3])).decode()
    frames = [frame for frame in body.split("\n\n") if frame]
    start = {"type": "TEXT_MESSAGE_START", "messageId": "r_one-3", "role": "assistant"}
    # message.delta (id 3) became TEXT_MESSAGE_START and _CONTENT: the first is 3.0, the last says "3 is all here".
    assert [frame.split("\n")[:2] for frame in frames] == [
        ["id: 1", frames[0].split("\n")[1]],
        ["id: 3.0", f"data: {json.dumps(start, separators=(',', ':'))}"],
        ["id: 3", frames[2].split("\n")[1]],
    ]


def test_ag_ui_resuming_inside_an_event_sends_its_frames_after_the_one_the_client_has() -> None:
    events = stored(EVENTS)
    whole = translate(AgUiEvents("t", [], run_id=RUN), events).decode()
    frames = [frame for frame in whole.split("\n\n") if frame]
    for cut, frame in enumerate(frames[:-1]):
        position = Position.of(frame.split("\n")[0].removeprefix("id: "))
        resumed = translate(AgUiEvents("t", [], quiet_until=position.after, within=position.within), events).decode()
        assert [f for f in resumed.split("\n\n") if f] == frames[cut + 1 :], f"cut after {frame[:20]!r}"


def test_an_ag_ui_frame_id_is_an_event_id_or_one_of_its_frames() -> None:
    assert Position.of("12") == Position(12)
    assert Position.of("12.0") == Position(11, within=1)
    assert Position.of("12.2") == Position(11, within=3)
    for bad in ("", "-1", "1.2.3", "x", "1.", "1e3", "0.1"):
        with pytest.raises(InvalidLastEventId):
            Position.of(bad)


def test_an_ag_ui_stream_declares_the_clients_older_minor_or_its_own() -> None:
    assert protocol_version("1.0") == "1.0"
    assert protocol_version(None) == protocol_version("1.1") == protocol_version("1.7") == "1.1"
    assert protocol_version("2.0") == protocol_version("garbage") == "1.1"


def test_ag_ui_resuming_mid_message_sends_only_what_follows_and_keeps_the_message_open() -> None:
    events = stored(EVENTS)
    whole = sse_data(translate(AgUiEvents("t", []), events))
    resumed = sse_data(translate(AgUiEvents("t", [], quiet_until=13), events))
    # Event 13 opened the last text message: what follows (14: ".", 15: the end) continues it, with no
    # second START, exactly as a client that stayed connected got it.
    assert [event["type"] for event in resumed] == ["TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END", "RUN_FINISHED"]
    assert resumed == whole[-3:]


def test_ag_ui_runs_of_a_thread_follow_one_another_and_a_run_cancelled_in_line_is_not_shown() -> None:
    first = stored([("run.queued", {"input": "a"}), ("run.started", {"attempt": 1})], run_id="r_a")
    second = stored([("run.queued", {"input": "b"})], run_id="r_b", first=3)
    third = stored([("run.queued", {"input": "c"})], run_id="r_c", first=4)
    rest = [
        *stored([("run.cancelled", {"reason": "superseded"})], run_id="r_b", first=5),
        *stored(
            [("message.delta", {"text": "A"}), ("run.completed", {"output": "A", "usage": {}})], run_id="r_a", first=6
        ),
        *stored([("run.started", {"attempt": 1}), ("run.cancelled", {"reason": "stop"})], run_id="r_c", first=8),
    ]
    events = sse_data(translate(AgUiEvents("t", []), first + second + third + rest))
    assert [(event["type"], event.get("runId")) for event in events] == [
        ("RUN_STARTED", "r_a"), ("TEXT_MESSAGE_START", None), ("TEXT_MESSAGE_CONTENT", None),
        ("TEXT_MESSAGE_END", None), ("RUN_FINISHED", "r_a"), ("RUN_STARTED", "r_c"), ("RUN_FINISHED", "r_c"),
    ]  # fmt: skip
    assert events[-1]["outcome"] == {"type": "cancelled"}


def test_ag_ui_connect_opens_with_the_thread_so_far() -> None:
    history = thread_messages([RunRecord(run_id="r_zero", input="hi", output="Hello", status="completed")])
    events = sse_data(translate(AgUiEvents("t", history, run_id=RUN, snapshot_first=True), stored(EVENTS[:3])))
    assert [event["type"] for event in events[:2]] == ["RUN_STARTED", "MESSAGES_SNAPSHOT"]
    assert [message["id"] for message in events[1]["messages"]] == ["r_zero-input", "r_zero", f"{RUN}-input"]


# A run that asks before a tool call, is answered, and whose worker then dies once: it starts over,
# and streams again what came before the question (the answer is recorded: it is not asked again).
ASKED: list[tuple[str, dict[str, Any]]] = [
    ("run.queued", {"input": "clean up"}),
    ("run.started", {"attempt": 1}),
    ("message.delta", {"text": "Checking. "}),
    ("tool.started", {"call_id": "c1", "name": "delete_files", "arguments": {"count": 3}}),
    ("input.required", {"input_id": "in_1", "kind": "approval", "prompt": "Delete?", "schema": {}, "call_id": "c1"}),
    ("input.received", {"input_id": "in_1", "answer": {"approved": True}}),
    ("run.started", {"attempt": 1, "reason": "resume"}),
    ("message.delta", {"text": "Dele"}),
    ("run.retrying", {"attempt": 2, "reason": "worker lost"}),
    ("run.started", {"attempt": 2, "reason": "takeover"}),
    ("message.delta", {"text": "Checking. "}),
    ("tool.started", {"call_id": "c1", "name": "delete_files", "arguments": {"count": 3}}),
    ("tool.completed", {"call_id": "c1", "result": "deleted", "duration_ms": 0}),
    ("message.delta", {"text": "Done."}),
    ("run.completed", {"output": "Checking. Done.", "usage": {}}),
]


def test_ai_sdk_a_waiting_question_ends_the_response_and_an_answered_one_is_replayed_past() -> None:
    waiting = sse_data(translate(UiMessageStream(RUN), stored(ASKED[:5])))
    assert [p["type"] for p in waiting][-4:] == [
        "tool-input-available",
        "tool-approval-request",
        "finish-step",
        "finish",
    ]
    assert waiting[-3] == {
        "type": "tool-approval-request",
        "approvalId": "in_1",
        "toolCallId": "c1",
        "reason": "Delete?",
    }
    translation = UiMessageStream(RUN, answered=frozenset({"in_1"}))
    replayed = sse_data(translate(translation, stored(ASKED)))
    types = [p["type"] for p in replayed]
    assert types.count("finish") == 1 and types[-1] == "finish" and translation.finished
    assert {"type": "tool-approval-response", "approvalId": "in_1", "approved": True} in replayed
    # A resume after the answer goes on in the attempt's step, so the restart's reset-step drops
    # everything the run showed, the text before the question included: the new attempt streams it again.
    assert types.count("start-step") == 2
    kept = replayed[types.index("reset-step") + 1 :]
    assert [p["delta"] for p in kept if p["type"] == "text-delta"] == ["Checking. ", "Done."]


def test_ag_ui_a_waiting_question_interrupts_the_run_and_a_restart_after_the_answer_drops_all_of_it() -> None:
    waiting = sse_data(translate(AgUiEvents("t", [], run_id=RUN), stored(ASKED[:5])))
    finished = waiting[-1]
    assert finished["type"] == "RUN_FINISHED" and finished["outcome"]["type"] == "interrupt"
    [interrupt] = finished["outcome"]["interrupts"]
    assert (interrupt["id"], interrupt["reason"], interrupt["toolCallId"]) == ("in_1", "approval", "c1")
    replayed = sse_data(translate(AgUiEvents("t", [], answered=frozenset({"in_1"})), stored(ASKED)))
    assert [e["type"] for e in replayed].count("RUN_STARTED") == 1  # past the answered question: one run
    [snapshot] = [e for e in replayed if e["type"] == "MESSAGES_SNAPSHOT"]
    assert [m.get("content") for m in snapshot["messages"]] == ["clean up"]  # it streams the rest again


def test_ag_ui_every_question_carries_tanstack_s_binding_to_the_run_the_client_knows() -> None:
    """A question tied to no tool call too (an approval's: tests/integration/test_ag_ui_binding.py):
    TanStack AI's client answers only an interrupt whose binding names the run it posted (or joined),
    with its digest of the schema."""
    schema: dict[str, Any] = {"type": "integer", "minimum": 1}
    asked: list[tuple[str, dict[str, Any]]] = [
        ("run.queued", {"input": "how many?"}),
        ("run.started", {"attempt": 1}),
        ("input.required", {"input_id": "in_2", "kind": "json", "prompt": "How many?", "schema": schema}),
    ]
    for client_run_id, named in ((None, RUN), ("run-1700000000000-abc123", "run-1700000000000-abc123")):
        events = AgUiEvents("t", [], run_id=RUN, client_run_id=client_run_id)
        [interrupt] = sse_data(translate(events, stored(asked)))[-1]["outcome"]["interrupts"]
        assert "toolCallId" not in interrupt
        assert interrupt["metadata"] == {
            "kind": "json",
            "tanstack:interruptBinding": {
                "v": 1,
                "kind": "generic",
                "interruptId": "in_2",
                "interruptedRunId": named,
                "generation": 0,
                "responseSchemaHash": schema_hash(schema),
            },
        }


@pytest.mark.parametrize(
    ("value", "canonical", "digest"),
    [
        # As @tanstack/ai 0.58.0's canonicalInterruptJson and digestInterruptJson make them.
        (
            {
                "type": "object",
                "required": ["approved"],
                "properties": {"approved": {"type": "boolean"}, "reason": {"type": "string"}},
            },
            '{"properties":{"approved":{"type":"boolean"},"reason":{"type":"string"}},"required":["approved"],"type":"object"}',
            "sha256:79f2d059262cd9d73db9a439f9cf17b9c122786b2f9e7d578c8f3ac45d8a1c70",
        ),
        (
            {"b": [1.5, 2.0, 1e21, 1e-7, 123456789012345678901], "a": "é \n", "\uffff": 1, "\U0001f600": 2},
            '{"a":"é \\n","b":[1.5,2,1e+21,1e-7,123456789012345680000],"\U0001f600":2,"\uffff":1}',
            "sha256:8bce0ffbc052ba1db811006ded98d8140782e52b0df21f6a7aee5410f32da749",
        ),
    ],
)
def test_the_schema_digest_is_tanstack_s(value: Any, canonical: str, digest: str) -> None:
    """Keys in UTF-16 order (an astral character before U+FFFF), numbers as JavaScript writes them."""
    assert canonical_json(value) == canonical and schema_hash(value) == digest


def test_a_denied_call_is_the_sdk_s_denied_state_not_an_error() -> None:
    events = stored(
        [
            ("run.queued", {"input": "a"}),
            ("run.started", {"attempt": 1}),
            ("tool.started", {"call_id": "c1", "name": "calculator", "arguments": {}}),
            ("tool.failed", {"call_id": "c1", "error": "a person denied this call", "duration_ms": 0, "denied": True}),
        ]
    )
    parts = sse_data(translate(UiMessageStream(RUN), events))
    assert parts[-1] == {"type": "tool-output-denied", "toolCallId": "c1"}


# A run taken over in its second model turn: one `run.continued` that keeps everything (the provider
# continued the text), or one that drops the cut turn's text (ids 6-7), which then restarts.
TAKEN_OVER: list[tuple[str, dict[str, Any]]] = [
    ("run.queued", {"input": "time?"}),
    ("run.started", {"attempt": 1}),
    ("message.delta", {"text": "Checking."}),
    ("tool.started", {"call_id": "c1", "name": "clock", "arguments": {}}),
    ("tool.completed", {"call_id": "c1", "result": "noon", "duration_ms": 1}),
    ("message.delta", {"text": "It is "}),  # 6: the second turn, cut
    ("message.delta", {"text": "no"}),  # 7
]


def _taken_over(keep_until: int) -> list[StoredEvent]:
    """Kept until 7: the text goes on after "It is no"; until 5: the cut turn says it all again."""
    continued = ("run.continued", {"attempt": 2, "from_event_id": keep_until})
    then = ("message.delta", {"text": "on." if keep_until == 7 else "It is noon."})
    return stored([*TAKEN_OVER, continued, then, ("run.completed", {"output": "Checking.It is noon.", "usage": {}})])


def test_ai_sdk_a_continued_run_goes_on_in_its_open_text_and_a_cut_turn_is_dropped_alone() -> None:
    went_on = sse_data(translate(UiMessageStream(RUN), _taken_over(7)))
    assert "reset-step" not in [part["type"] for part in went_on]
    assert "".join(part.get("delta", "") for part in went_on) == "Checking.It is noon."
    restarted = sse_data(translate(UiMessageStream(RUN), _taken_over(5)))
    reset = [part["type"] for part in restarted].index("reset-step")
    # After reset-step, the step's parts up to id 5 come again: the first turn and its tool call.
    assert [part["type"] for part in restarted[reset:]] == [
        "reset-step", "text-start", "text-delta", "text-end", "tool-input-start", "tool-input-available",
        "tool-output-available", "text-start", "text-delta", "text-end", "finish-step", "finish",
    ]  # fmt: skip
    assert restarted[reset + 2]["delta"] == "Checking." and restarted[-4]["delta"] == "It is noon."


def test_ag_ui_a_cut_turn_dropped_by_run_continued_is_a_snapshot_without_it() -> None:
    went_on = sse_data(translate(AgUiEvents("t", [], run_id=RUN), _taken_over(7)))
    assert "MESSAGES_SNAPSHOT" not in [event["type"] for event in went_on]
    restarted = sse_data(translate(AgUiEvents("t", [], run_id=RUN), _taken_over(5)))
    (snapshot,) = [event for event in restarted if event["type"] == "MESSAGES_SNAPSHOT"]
    assert [m.get("content") for m in snapshot["messages"] if m["role"] == "assistant"] == ["Checking."]


def test_ai_sdk_a_drop_inside_one_text_block_keeps_its_text_up_to_the_id() -> None:
    # A graph's two nodes wrote into one text block; the run goes on from a checkpoint after the first.
    events = stored(
        [
            ("run.queued", {"input": "x"}),
            ("run.started", {"attempt": 1}),
            ("message.delta", {"text": "First "}),
            ("message.delta", {"text": "node. "}),  # 4: the checkpoint after it
            ("message.delta", {"text": "Cut"}),
            ("run.continued", {"attempt": 2, "from_event_id": 4}),
            ("message.delta", {"text": "Second node."}),
        ]
    )
    parts = sse_data(translate(UiMessageStream(RUN), events))
    reset = [part["type"] for part in parts].index("reset-step")
    assert parts[reset:] == [
        {"type": "reset-step"},
        {"type": "text-start", "id": "text-3"},
        {"type": "text-delta", "id": "text-3", "delta": "First node. "},
        {"type": "text-end", "id": "text-3"},
        {"type": "text-start", "id": "text-7"},
        {"type": "text-delta", "id": "text-7", "delta": "Second node."},
    ]
