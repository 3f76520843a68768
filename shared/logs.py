"""Logging for every tokentail process: text or JSON lines, with the session and run in context,
and credentials scrubbed.

    with log_context(session_id=sid, run_id=rid):   # every record logged inside carries both
        logger.info("run started")

JSON lines: {"time", "level", "logger", "message", "session_id"?, "run_id"?, "exception"?}.
Stream tokens ride in URLs (`?token=`, for EventSource), so access logs would show them: every
formatted line, exception text included, passes through `scrub`, which also hides bearer credentials.
"""

import contextlib
import contextvars
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("tokentail_log_context", default=None)

_SECRETS = re.compile(r"((?:[?&]token=)|(?:\bBearer\s+))[^\s&\"'\\]+", re.IGNORECASE)


def scrub(text: str) -> str:
    return _SECRETS.sub(r"\1[redacted]", text)


def current_context() -> dict[str, str]:
    return _context.get() or {}


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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
            **current_context(),
        }
        if record.exc_info:
            line["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(f"{key}={value}" for key, value in current_context().items())
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
