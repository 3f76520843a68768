"""Every error leaves the gateway as JSON `{"error": {"type", "message", "param", "code"}}` with its
status: OpenAI's shape (`code` repeats `type`; `param` is null), which its SDKs read into their
exceptions."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis import exceptions as redis_errors
from starlette.exceptions import HTTPException
from starlette.routing import Match

from tokentail.shared.connections.outage import is_outage, out_of_memory, read_only
from tokentail.shared.plumbing.logs import RateLimitedLogger
from tokentail.shared.vocabulary.errors import (
    ArchiveUnavailable,
    Forbidden,
    ForkBytesLimited,
    InputNotPending,
    InputTooLarge,
    InvalidInput,
    InvalidLastEventId,
    QuestionNotFound,
    QueuedRunLimit,
    QueueingUnanswered,
    RateLimited,
    RunConflict,
    RunNotActive,
    RunNotFound,
    SessionExists,
    SessionExpired,
    SessionNotFound,
    SteerLimit,
    TaskNotFound,
    TokenExpired,
    TokentailError,
    TooManySteers,
    TooManyStreams,
    Unauthorized,
)

_STATUS: list[tuple[type[TokentailError], int, str]] = [
    (SessionExpired, 410, "session_expired"),  # before its parent, SessionNotFound
    (SessionNotFound, 404, "session_not_found"),
    (RunNotFound, 404, "run_not_found"),
    (TaskNotFound, 404, "task_not_found"),
    (QuestionNotFound, 404, "question_not_found"),
    (RunConflict, 409, "run_conflict"),
    (InputNotPending, 409, "input_not_pending"),
    (RunNotActive, 409, "run_not_active"),
    (SteerLimit, 409, "steer_limit"),
    (SessionExists, 409, "session_exists"),
    (InvalidLastEventId, 400, "invalid_last_event_id"),
    (InputTooLarge, 413, "input_too_large"),
    (InvalidInput, 422, "validation_error"),
    (TokenExpired, 401, "token_expired"),  # before its parent, Unauthorized
    (Unauthorized, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (TooManyStreams, 429, "too_many_streams"),  # before its parent, RateLimited
    (ForkBytesLimited, 429, "fork_bytes_limited"),  # before its parent, RateLimited
    (TooManySteers, 429, "too_many_pending_steers"),  # before its parent, RateLimited
    (QueuedRunLimit, 429, "queued_run_limit"),  # before its parent, RateLimited
    (RateLimited, 429, "rate_limited"),
    (ArchiveUnavailable, 503, "archive_unavailable"),
    (QueueingUnanswered, 503, "redis_unavailable"),
]
# 5xx errors whose message is for the client (what to do next), not an internal one.
_TOLD = (ArchiveUnavailable, QueueingUnanswered)

_outage_log = RateLimitedLogger(logging.getLogger(__name__), every_seconds=10)

_HTTP_TYPES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "input_too_large"}


def error_response(
    status: int, type_: str, message: str, headers: dict[str, str] | None = None, **details: str
) -> JSONResponse:
    """`details`: fields beside the message that a program reads (the ids of a run not known to be queued)."""
    body = {"error": {"type": type_, "message": message, "param": None, "code": type_, **details}}
    return JSONResponse(body, status_code=status, headers=headers)


def describe(exc: TokentailError) -> tuple[int, str]:
    """The HTTP status and error type of one of tokentail's errors."""
    return next(((status, type_) for cls, status, type_ in _STATUS if isinstance(exc, cls)), (500, "internal_error"))


async def _tokentail_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TokentailError)
    status, type_ = describe(exc)
    message = str(exc) if status < 500 or isinstance(exc, _TOLD) else "internal error"
    details = {"session_id": exc.session_id, "run_id": exc.run_id} if isinstance(exc, QueueingUnanswered) else {}
    return error_response(status, type_, message, error_headers(exc), **details)


def error_headers(exc: TokentailError) -> dict[str, str] | None:
    if isinstance(exc, RateLimited):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, QueueingUnanswered):
        return {"Retry-After": "1"}
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": 'Bearer realm="tokentail"'}
    return None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"] if part != "body") or "body"
        problems.append(f"{where}: {error['msg']}")
    return error_response(422, "validation_error", "; ".join(problems))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return error_response(exc.status_code, _HTTP_TYPES.get(exc.status_code, "http_error"), str(exc.detail), headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route takes at this path: Starlette's `Allow` names only those of the first
    route that matches the path, though a path is often several routes (GET and DELETE of a session)."""
    return [
        method
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in request.app.router.routes
        )
    ]


def describe_outage(exc: Exception) -> tuple[str, str, int] | None:
    """The error type, message and Retry-After seconds of a Redis outage (see shared/connections/outage.py),
    with a type that tells an operator what to fix; None if `exc` is no outage."""
    if out_of_memory(exc):
        return "redis_full", "Redis is out of memory and refuses writes; try again later", 10
    if read_only(exc):
        return "redis_read_only", "Redis is read-only (a replica, or a failover in progress); try again", 2
    if is_outage(exc):
        return "redis_unavailable", "Redis is not reachable; try again", 1
    return None


def outage_response(exc: Exception) -> JSONResponse | None:
    """503, with `Retry-After`, for a Redis outage; None for any other error."""
    if (outage := describe_outage(exc)) is None:
        return None
    type_, message, retry_after = outage
    return error_response(503, type_, message, {"Retry-After": str(retry_after)})


async def _redis_failure(request: Request, exc: Exception) -> JSONResponse:
    # An outage is an answer like any other: no traceback, and the connection stays open for the
    # client's next request (the catch-all below re-raises, and uvicorn then closes the connection).
    response = outage_response(exc)
    if response is None:
        raise exc  # a bug: to the catch-all, which logs it
    _outage_log.warning("Redis outage: %s (%s); answering 503", type(exc).__name__, exc)
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Starlette logs the exception after this; the client gets JSON and no internals.
    return error_response(500, "internal_error", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Exception, _unexpected)
    for failure in (redis_errors.RedisError, OSError):
        app.add_exception_handler(failure, _redis_failure)
    app.add_exception_handler(TokentailError, _tokentail_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
