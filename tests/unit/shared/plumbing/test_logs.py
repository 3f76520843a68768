"""Log lines: JSON or text, with session and run ids from context, credentials scrubbed."""

import json
import logging
import sys

import pytest
from opentelemetry import trace
from pydantic import ValidationError

from tokentail.shared.plumbing import tracing
from tokentail.shared.plumbing.logs import JsonFormatter, TextFormatter, log_context, scrub
from tokentail.shared.plumbing.settings import Settings


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("failed calling https://api.example/v1?token=v1.abc.def")
        except RuntimeError:
            exc_info = sys.exc_info()
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, message, args, exc_info)


def test_tokens_in_urls_and_bearer_credentials_are_scrubbed() -> None:
    assert scrub("GET /v1/sessions/s_x/events?last_event_id=3&token=v1.eyJ.sig HTTP/1.1") == (
        "GET /v1/sessions/s_x/events?last_event_id=3&token=[redacted] HTTP/1.1"
    )
    assert scrub("Authorization: Bearer acme-key-0123456789") == "Authorization: Bearer [redacted]"
    assert scrub("nothing secret here") == "nothing secret here"


@pytest.mark.parametrize(
    "query",
    [
        "%74oken=v1.eyJ.sig",  # what the gateway decodes into `token`, and accepts
        "%2574oken=v1.eyJ.sig",  # encoded twice
        "api_key=acme-key-0123456789",  # a key where none belongs: scrubbed all the same
        "API%5FKEY=acme-key-0123456789",
        "access_token=abc",
        "X-Amz-Signature=abc",
        "client_secret=abc",
        "password=hunter22",
    ],
)
def test_every_credential_like_query_parameter_is_scrubbed_after_decoding(query: str) -> None:
    line = scrub(f'127.0.0.1:5 - "GET /v1/sessions/s_x/events?last_event_id=3&{query}&tail=1 HTTP/1.1" 200')
    name = query.partition("=")[0]
    assert f"?last_event_id=3&{name}=[redacted]&tail=1 HTTP/1.1" in line


def test_json_lines_carry_the_context_and_no_token() -> None:
    access = record('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/v1/sessions/s_a/events?token=v1.x.y", "1.1", 200)
    with log_context(session_id="s_a", run_id="r_b"):
        line = json.loads(JsonFormatter().format(access))
    assert line["session_id"] == "s_a" and line["run_id"] == "r_b"
    assert line["level"] == "info" and line["logger"] == "uvicorn.access"
    assert "v1.x.y" not in line["message"] and "token=[redacted]" in line["message"]
    failed = json.loads(JsonFormatter().format(record("boom", exc=True)))
    assert "RuntimeError" in failed["exception"] and "v1.abc.def" not in failed["exception"]
    assert "session_id" not in failed  # the context ended with its block


def test_text_lines_append_the_context() -> None:
    with log_context(session_id="s_a"):
        text = TextFormatter().format(record("run %s started", "r_1"))
    assert text.endswith("run r_1 started [session_id=s_a]")


def test_a_bad_api_keys_setting_never_prints_the_keys() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(api_keys="acme:short-key", secret="s" * 40)
    assert "short-key" not in str(info.value) and "shorter than 16" in str(info.value)
    with pytest.raises(ValidationError, match="TOKENTAIL_SECRET is required"):
        Settings(api_keys="acme:" + "k" * 20)
    with pytest.raises(ValidationError) as info:
        Settings(api_keys="acme:" + "k" * 20 + ",beta:" + "k" * 20, secret="s" * 40)
    assert "listed twice" in str(info.value) and "k" * 20 not in str(info.value)
    assert Settings(api_keys="acme:" + "k" * 20, secret="s" * 40).tenants_by_key == {"k" * 20: "acme"}


def test_with_traces_on_a_line_logged_in_a_span_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    span = trace.NonRecordingSpan(trace.SpanContext(0xABC, 0xDEF, is_remote=False))
    with trace.use_span(span):
        assert "trace_id" not in json.loads(JsonFormatter().format(record("off")))  # traces off: nothing
        monkeypatch.setattr(tracing, "ON", True)
        line = json.loads(JsonFormatter().format(record("on")))
        text = TextFormatter().format(record("on"))
    assert (line["trace_id"], line["span_id"]) == (f"{0xABC:032x}", f"{0xDEF:016x}")
    assert f"trace_id={0xABC:032x}" in text
    assert "trace_id" not in json.loads(JsonFormatter().format(record("outside")))  # no span current
