"""Logging for every tokentail process: text or JSON lines, with the session and run in context,
and credentials scrubbed.

    with log_context(session_id=sid, run_id=rid):   # every record logged inside carries both
        logger.info("run started")

JSON lines: {"time", "level", "logger", "message", "session_id"?, "run_id"?, "trace_id"?, "span_id"?,
"exception"?}: with traces on (shared/plumbing/tracing.py), a line logged inside a span names it.
Stream tokens ride in URLs (`?token=`, for EventSource), so access logs would show them: every
formatted line, exception text included, passes through `scrub`. It hides bearer credentials and
the value of every credential-like query parameter (token, api_key, secret, password, signature...),
judged by its name once percent-decoded: the gateway decodes `?%74oken=` into `token` too.
"""

import contextlib
import contextvars
import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from opentelemetry import trace

from tokentail.shared.plumbing import tracing

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("tokentail_log_context", default=None)

_BEARER = re.compile(r"(\bBearer\s+)[^\s&\"'\\]+", re.IGNORECASE)
_QUERY_PARAMETER = re.compile(r"([?&;])([^=&;\s\"'#?]+)=([^&;\s\"'#]*)")
_CREDENTIAL_NAME = re.compile(r"token|key|secret|passw|pwd|auth|sig|credential", re.IGNORECASE)


def _scrub_parameter(match: re.Match[str]) -> str:
    name = match.group(2)
    for _ in range(3):  # `%2574oken` is `%74oken` decoded once, `token` twice
        name = unquote_plus(name)
    if not _CREDENTIAL_NAME.search(name) or not match.group(3):
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}=[redacted]"


def scrub(text: str) -> str:
    return _BEARER.sub(r"\1[redacted]", _QUERY_PARAMETER.sub(_scrub_parameter, text))


def current_context() -> dict[str, str]:
    return _context.get() or {}


def _fields() -> dict[str, str]:
    """The log context, and the current span's ids when traces are on."""
    fields = current_context()
    if tracing.ON and (span := trace.get_current_span().get_span_context()).is_valid:
        return {**fields, "trace_id": f"{span.trace_id:032x}", "span_id": f"{span.span_id:016x}"}
    return fields


@contextlib.contextmanager
def log_context(**fields: str) -> Iterator[None]:
    token = _context.set({**current_context(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: str) -> None:
    """Add fields to the log context of the current task (each request and each job has its own)."""
    _context.set({**current_context(), **fields})


class RateLimitedLogger:
    """Logs a message at most once per `every_seconds` (per message template): for what may fail on
    every request during an outage. Says how many were left out."""

    def __init__(self, logger: logging.Logger, every_seconds: float) -> None:
        self._logger = logger
        self._every = every_seconds
        self._last: dict[str, tuple[float, int]] = {}  # template -> (when logged, left out since)

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        logged_at, left_out = self._last.get(message, (float("-inf"), 0))
        if now - logged_at < self._every:
            self._last[message] = (logged_at, left_out + 1)
            return
        self._last[message] = (now, 0)
        suffix = f" ({left_out} more like it since)" if left_out else ""
        self._logger.warning(message + suffix, *args)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
            **_fields(),
        }
        if record.exc_info:
            line["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(f"{key}={value}" for key, value in _fields().items())
        return scrub(f"{text} [{context}]" if context else text)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
