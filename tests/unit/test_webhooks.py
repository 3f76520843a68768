"""Webhooks' pure parts: the allowlist, the signature (against the Standard Webhooks library), the
payload, the retry delays."""

import json
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from tokentail.shared.records import RunRecord
from tokentail.shared.response_ids import response_id
from tokentail.shared.webhook_messages import Hook, new_secret, sign
from tokentail.shared.webhook_policy import WebhookNotAllowed, WebhookPolicy
from tokentail.worker.webhook_delivery import MAX_DELAY_SECONDS, retry_delay

POLICY = WebhookPolicy(["https://Hooks.example.com/tokentail", "http://[::1]:9000/"])


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.example.com/tokentail", True),
        ("https://HOOKS.example.com:443/tokentail/a/b?x=1", True),  # host case, default port
        ("https://hooks.example.com/tokentailx", False),
        ("https://hooks.example.com/", False),
        ("http://hooks.example.com/tokentail", False),
        ("https://hooks.example.com:444/tokentail", False),
        ("https://hooks.example.com@evil.io/tokentail", False),
        ("http://[::1]:9000/any", True),
        ("http://[::1]:9001/any", False),
        ("https://hooks.example.com:99999/tokentail", False),  # not a port
        ("ftp://hooks.example.com/tokentail", False),
        ("not a url", False),
    ],
)
def test_the_allowlist_matches_scheme_host_and_port_exactly_then_a_path_prefix(url: str, allowed: bool) -> None:
    assert POLICY.allows(url) is allowed
    if not allowed:
        with pytest.raises(WebhookNotAllowed):
            POLICY.check(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/tokentail/../../admin/x",  # a client resolves .. before posting
        "https://hooks.example.com/tokentail/%2e%2e/%2E%2E/admin",
        "https://hooks.example.com/tokentail/.%2e/admin",
        "https://hooks.example.com/tokentail%2f..%2fadmin",
        "https://hooks.example.com/tokentail/./x",
        "https://hooks.example.com/tokentail/\\..\\admin",
        "https://hooks.example.com/tokentail/a\tb",
        "https://hooks.example.com/tokentail/a\nb",
        "https://hooks.example.com/tokentail/\x01",
        "https://hooks.example.com/tokentail/a b",
        "https://hooks.example.com\r\n/tokentail",
    ],
)
def test_dot_segments_and_control_characters_never_pass_the_allowlist(url: str) -> None:
    # Checked as written, `/tokentail/../../admin` was under `/tokentail`: the worker posted, signed, to /admin.
    assert not POLICY.allows(url)
    with pytest.raises(WebhookNotAllowed):
        POLICY.check(url)


def test_webhooks_are_off_without_an_allowlist() -> None:
    with pytest.raises(WebhookNotAllowed, match="off"):
        WebhookPolicy([]).check("https://hooks.example.com/")


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


def test_retries_wait_longer_as_the_event_ages_up_to_a_bound() -> None:
    assert 0.9 <= retry_delay(0) <= 1.1
    assert 90 <= retry_delay(200) <= 110
    assert retry_delay(10**6) <= MAX_DELAY_SECONDS * 1.1


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
    run = RunRecord(run_id=run_id, input="go", answers={"in_1": "a", "in_2": "b"})
    assert older.segment is None and json.loads(older.openai_body(run))["data"]["id"] == expected
