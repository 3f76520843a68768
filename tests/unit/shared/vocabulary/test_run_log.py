"""RunLog (shared/vocabulary/run_log.py): a run's events as its clients keep them, the record a run goes on from."""

import json
from typing import Any

from tokentail.shared.vocabulary.run_log import RunLog


def _log(*events: tuple[str, dict[str, Any]]) -> RunLog:
    return RunLog.of(
        "r", [(seq, kind, json.dumps({"run_id": "r", **data})) for seq, (kind, data) in enumerate(events, 1)]
    )


def test_the_log_keeps_what_clients_keep() -> None:
    log = _log(
        ("run.started", {"attempt": 1}),
        ("message.delta", {"text": "dead "}),
        ("run.retrying", {"attempt": 2, "reason": "x"}),  # 3: drops what came before
        ("run.started", {"attempt": 2}),
        ("message.delta", {"text": "Hello "}),  # 5
        ("tool.started", {"call_id": "c1", "name": "t", "arguments": {}}),
        ("tool.completed", {"call_id": "c1", "result": 1, "duration_ms": 0}),
        ("reasoning.delta", {"text": "hmm"}),  # 8
        ("message.delta", {"text": "wor"}),  # 9
        ("run.continued", {"attempt": 3, "from_event_id": 7}),  # drops 8 and 9
        ("message.delta", {"text": "world"}),
        ("status", {"text": "s"}),
    )
    assert log.text == "Hello world" and log.last_seq == 12
    assert log.started_calls == log.finished_calls == {"c1"} and log.reasoning_chars == 0
    assert log.counts() == {"status": 1}


def test_a_fork_s_start_drops_what_followed_its_point_as_a_continuation_does_and_others_drop_nothing() -> None:
    events: list[tuple[str, dict[str, Any]]] = [
        ("run.started", {"attempt": 1}),
        ("message.delta", {"text": "Hello "}),  # 2
        ("message.delta", {"text": "wor"}),  # 3: the fork's copy ends here, its turn cut
        ("run.started", {"attempt": 1, "reason": "fork", "from_event_id": 2}),  # drops 3
        ("message.delta", {"text": "world"}),
    ]
    assert _log(*events).text == "Hello world"
    kept = [*events[:3], ("run.started", {"attempt": 1, "reason": "fork", "from_event_id": 3})]
    assert _log(*kept).text == "Hello wor"  # it goes on from the text: nothing dropped
    over = [*events[:3], ("run.started", {"attempt": 1, "reason": "fork", "from_event_id": 0})]
    assert _log(*over).text == ""  # it starts over
    resumed = [*events[:3], ("run.started", {"attempt": 1, "reason": "resume"})]
    assert _log(*resumed).text == "Hello wor"
