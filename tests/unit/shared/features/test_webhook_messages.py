"""shared/features/webhook_messages.py: the signature (against the Standard Webhooks library) and the payload,
in tokentail's format and in OpenAI's."""

import json
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from tokentail.shared.features.webhook_messages import Hook, new_secret, sign
from tokentail.shared.vocabulary.records import RunRecord
from tokentail.shared.vocabulary.response_ids import response_id


def test_the_signature_is_standard_webhooks() -> None:
    secret, body, when = new_secret(), b'{"type":"run.completed"}', datetime.now(tz=UTC)
    timestamp = int(when.timestamp())
    signature = sign(secret, "s_1.9", timestamp, body)
    assert signature == Webhook(secret).sign("s_1.9", when, body.decode())
    headers = {"webhook-id": "s_1.9", "webhook-timestamp": str(timestamp), "webhook-signature": signature}
    assert Webhook(secret).verify(body, headers) == {"type": "run.completed"}


def test_a_completed_runs_payload_has_its_output_back_and_its_ids() -> None:
    entry = {
        "seq": 9,
        "ts": "1795400000123456",
        "type": "run.completed",
        "data": '{"run_id":"r_1","usage":{}}',
        "url": "https://h/",
        "tenant": "acme",
        "output": "Hi é",
    }
    hook = Hook.parse("s_1", json.dumps(entry).encode())
    assert (hook.webhook_id, hook.ts_ms, hook.tenant) == ("s_1.9", 1795400000123, "acme")
    assert json.loads(hook.body()) == {
        "type": "run.completed",
        "timestamp": 1795400000.123,
        "session_id": "s_1",
        "event_id": "9",
        "data": {"run_id": "r_1", "usage": {}, "output": "Hi é"},
    }
    failed = Hook.parse("s_1", json.dumps(entry | {"type": "run.failed", "output": None}).encode())
    assert json.loads(failed.body())["data"] == {"run_id": "r_1", "usage": {}}


@pytest.mark.responses
def test_an_openai_body_names_the_segment_its_entry_keeps_and_an_older_entry_s_from_its_run() -> None:
    session_id, run_id = "s_" + "a" * 22, "r_" + "b" * 12
    entry = {
        "seq": 9,
        "ts": "1795400000123456",
        "type": "run.completed",
        "data": json.dumps({"run_id": run_id}),
        "url": "https://h/",
        "tenant": "acme",
        "segment": 2,
    }
    hook = Hook.parse(session_id, json.dumps(entry).encode())
    expected = response_id(session_id, run_id, 2)
    assert json.loads(hook.openai_body())["data"]["id"] == expected == f"resp_{session_id}{run_id}.2"
    older = Hook.parse(session_id, json.dumps({k: v for k, v in entry.items() if k != "segment"}).encode())
    run = RunRecord(run_id=run_id, input="go", answers={"in_1": "a", "in_2": "b"}, resumes=2)
    assert older.segment is None and json.loads(older.openai_body(run))["data"]["id"] == expected
