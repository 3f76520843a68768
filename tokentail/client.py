"""A Python client for tokentail, async and sync, that streams with automatic resume.

    async with AsyncTokentail("http://127.0.0.1:8000", api_key=os.environ.get("TOKENTAIL_API_KEY")) as client:
        session = await client.create_session("What is 12 * (3 + 4)?")
        async for event in client.stream(session.session_id):
            if event.event == "message.delta":
                print(event.data["text"], end="")

`stream` follows a session's events: when the connection drops it reconnects with the last id it
saw (backing off), so no event is lost or repeated; it ends when the server answers 204 (nothing
left and no run active). Opened far behind (from the start, as here, or hundreds of events back), it
catches up compacted: each block of text so far as one `message.delta`, then delta by delta.
`Tokentail` is the same with blocking calls. With an `api_key` every call sends it; without one,
`stream` can read a session with its stream token (`token=`).

The other calls are sent again, for up to `retry_for` seconds (waiting what `Retry-After` says),
when sending them again cannot do anything twice (`retried`, below). `get_session` is a read;
`create_session` and `send` carry an `Idempotency-Key` of their own (the gateway makes what a key
names once), and `cancel` changes nothing the second time: these are sent again after any passing
failure, a Redis failover's 503s and a connection lost mid-call included. `answer` is sent again
only on an answer that says it did nothing (a second answer would be refused as answered).
"""

import asyncio
import contextlib
import dataclasses
import json
import random
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx2

from tokentail.shared.vocabulary.errors import TokentailError
from tokentail.shared.vocabulary.events import Event

# Transient failures: a stream is resumed, a read sent again. Anything else (404, 410, 400, ...) is raised.
_RESUMABLE_STATUS = frozenset({429, 502, 503, 504})
# The 503s of a Redis outage (gateway/errors.py) after which a write is known not to have happened:
# Redis refused it (a replica during a failover, or full). `redis_unavailable` is not one: the
# connection to Redis broke, maybe after the write's script ran, and a 502 or 504 is a proxy's, in
# front of a gateway that may have done it: only a call that is safe to send again is, after those.
_WRITE_REFUSED = frozenset({"redis_read_only", "redis_full"})
RETRY_FOR = 30.0  # seconds, by default, that a REST call is sent again for
_FIRST_RETRY_DELAY = 0.5  # without a Retry-After: doubled each time, up to
_MAX_RETRY_DELAY = 5.0
# How a stream far behind catches up: compacted (`snapshot`, each block of text as one delta) or every event.
CatchUp = Literal["snapshot", "events"]


class ApiError(TokentailError):
    """An error answer of the API: its HTTP status, the `type` and `message` of its JSON body, and
    the seconds its `Retry-After` asks to wait (None without one)."""

    def __init__(self, status: int, type_: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {type_}: {message}")
        self.status = status
        self.type = type_
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class SessionCreated:
    session_id: str
    run_id: str | None
    events_url: str
    stream_token: str | None
    stream_token_expires_at: int | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "SessionCreated":
        # Fields a newer gateway adds are ignored rather than fatal.
        return cls(**{field.name: body[field.name] for field in dataclasses.fields(cls) if field.name in body})


class Resumption:
    """The reconnect logic, without I/O: the position to resume from, and how long to wait."""

    def __init__(
        self, last_event_id: int | None, catch_up: CatchUp = "snapshot", max_delay: float = 10.0, max_failures: int = 20
    ) -> None:
        self.last_event_id = last_event_id
        self.catch_up = catch_up
        self.max_delay = max_delay
        self.max_failures = max_failures
        self.failures = 0
        self.retry_ms: int | None = None
        self.ended = False  # the server answered 204: nothing left and no run active

    def params(self) -> dict[str, str]:
        params: dict[str, str] = {"catch_up": self.catch_up}
        if self.last_event_id is not None:
            params["last_event_id"] = str(self.last_event_id)
        return params

    def seen(self, event: Event) -> None:
        if event.id is not None:
            self.last_event_id = event.id
            self.failures = 0

    def next_delay(self, error: Exception) -> float:
        """After a failed or dropped connection: the wait before the next, or raise if it is hopeless."""
        self.failures += 1
        if self.failures > self.max_failures:
            raise error
        base = self.retry_ms / 1000 if self.retry_ms is not None else 0.5
        backoff = min(self.max_delay, base * 2.0 ** (self.failures - 1))
        return backoff / 2 + random.uniform(0, backoff / 2)


# Told of each reconnect, with what broke the connection and the seconds until the next try.
Reconnecting = Callable[[Exception, float], None]


def _reconnect_delay(resume: Resumption, error: Exception, on_reconnect: Reconnecting | None) -> float:
    delay = resume.next_delay(error)
    if on_reconnect is not None:
        on_reconnect(error, delay)
    return delay


def _error(response: httpx2.Response) -> ApiError:
    retry_after = _retry_after(response)
    try:
        error = response.json()["error"]
        return ApiError(response.status_code, error["type"], error["message"], retry_after)
    except (ValueError, KeyError, TypeError):
        return ApiError(response.status_code, "http_error", response.text[:200], retry_after)


def _check(response: httpx2.Response) -> None:
    if response.status_code >= 400:
        raise _error(response)


def _retry_after(response: httpx2.Response) -> float | None:
    """`Retry-After` in seconds (the gateway sends seconds; an HTTP date counts as none)."""
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


# A connection that could not be made: the request never left, whatever it was.
_NOT_SENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)


def retried(safe: bool, error: ApiError | httpx2.TransportError) -> bool:
    """Whether a REST call that got `error` is sent again. One `safe` to send again (a read, a write
    with an idempotency key, a cancel) on any passing failure; another only when it is known to have
    done nothing: a connection never made, 429 (the limits are counted before anything is written)
    or a 503 for which Redis refused the write. The one rule, for both clients."""
    if isinstance(error, httpx2.TransportError):
        return safe or isinstance(error, _NOT_SENT)
    if safe:
        return error.status in _RESUMABLE_STATUS
    return error.status == 429 or (error.status == 503 and error.type in _WRITE_REFUSED)


class _Retries:
    """The waits of one REST call's retries, within `retry_for` seconds of its first try."""

    def __init__(self, retry_for: float) -> None:
        self._deadline = time.monotonic() + retry_for
        self._tries = 0

    def delay(self, retry_after: float | None) -> float | None:
        """The wait before the next try, or None if it would end past the deadline."""
        self._tries += 1
        backoff = min(_MAX_RETRY_DELAY, _FIRST_RETRY_DELAY * 2 ** (self._tries - 1))
        wait = retry_after if retry_after is not None else backoff
        return wait if time.monotonic() + wait <= self._deadline else None

    def after(self, safe: bool, outcome: httpx2.Response | httpx2.TransportError) -> float | None:
        """After a try: the wait before the next, or None to stop (a success, or an error to raise)."""
        if isinstance(outcome, httpx2.TransportError):
            return self.delay(None) if retried(safe, outcome) else None
        if outcome.status_code < 400:
            return None
        error = _error(outcome)
        return self.delay(error.retry_after) if retried(safe, error) else None


def _retry_rule(method: str, safe: bool, keyed: bool) -> tuple[dict[str, str] | None, bool]:
    """A call's headers and whether it is safe to send again: a read, one that changes nothing the
    second time (`safe`), or a write `keyed` with an idempotency key of its own, the same on every try."""
    headers = {"Idempotency-Key": str(uuid.uuid4())} if keyed else None
    return headers, safe or keyed or method == "GET"


def _headers(credential: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"} if credential else {}


def _session_body(input: str | None, **fields: Any) -> dict[str, Any]:
    return {"input": input, **{key: value for key, value in fields.items() if value is not None}}


def _run_body(input: str, multitask: str, options: dict[str, Any]) -> dict[str, Any]:
    return {"input": input, "multitask": multitask, **{k: v for k, v in options.items() if v is not None}}


def _fork_call(session_id: str, after: int | None, at: int | None, options: dict[str, Any]) -> tuple[str, Any]:
    """The URL and body of a fork: after a turn (`after`), or at any event (`at`, with its options:
    `continue`, `agent`, `model`, `params`, `instructions`, those given)."""
    if (after is None) == (at is None):
        raise ValueError("fork: give `after` (a turn's end) or `at` (any event), one of them")
    url = f"/v1/sessions/{session_id}/fork"
    if after is not None:
        return f"{url}?after={after}", None
    return url, {"at": at, **{name: value for name, value in options.items() if value is not None}}


def _json(outcome: httpx2.Response | Exception) -> Any:
    if isinstance(outcome, Exception):
        raise outcome
    _check(outcome)
    return outcome.json()


def _stream_status(response: httpx2.Response) -> bool:
    """True if the stream is over (204); raises for errors, or TransportError for passing ones."""
    if response.status_code == 204:
        return True
    if response.status_code in _RESUMABLE_STATUS:
        raise httpx2.TransportError(f"status {response.status_code}")
    _check(response)
    return False


def _events(resume: Resumption, sse: httpx2.ServerSentEvent) -> list[Event]:
    """What one SSE frame holds: an event, or a snapshot's events (a compacted catch-up: the deltas
    of each block of text as one, with the id of the last), after which the position is the
    snapshot's own id."""
    if sse.retry is not None:
        resume.retry_ms = sse.retry
    if not sse.data:
        return []
    event_id = int(sse.id) if sse.id and sse.event != "gap" else None
    data = json.loads(sse.data)
    if sse.event == "snapshot":
        events = [Event.model_validate(event) for event in data["events"]]
        resume.seen(Event(id=event_id, event=sse.event, data={}))
        return events
    event = Event(id=event_id, event=sse.event, data=data)
    resume.seen(event)
    return [event]


class AsyncTokentail:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        http: httpx2.AsyncClient | None = None,
        retry_for: float = RETRY_FOR,
    ) -> None:
        """`retry_for`: how long a REST call may be sent again (0: never; see `retried`)."""
        timeout = httpx2.Timeout(10.0, read=None)  # streams may be silent between runs
        self._http = http or httpx2.AsyncClient(base_url=base_url, timeout=timeout, headers=_headers(api_key))
        self._retry_for = retry_for

    async def _call(
        self, method: str, url: str, body: dict[str, Any] | None = None, *, safe: bool = False, keyed: bool = False
    ) -> Any:
        """The JSON answer of a REST call, sent again while `retried` says it may be: a GET, one
        `safe` to repeat, or one `keyed` with an idempotency key (the same on every try) is."""
        headers, safe = _retry_rule(method, safe, keyed)
        retries = _Retries(self._retry_for)
        while True:
            outcome: httpx2.Response | httpx2.TransportError
            try:
                outcome = await self._http.request(method, url, json=body, headers=headers)
            except httpx2.TransportError as exc:
                outcome = exc
            if (delay := retries.after(safe, outcome)) is None:
                return _json(outcome)
            await asyncio.sleep(delay)

    async def __aenter__(self) -> "AsyncTokentail":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def create_session(
        self,
        input: str | None = None,
        *,
        model: str | None = None,
        params: dict[str, Any] | None = None,
        agent: str | None = None,
        metadata: dict[str, Any] | None = None,
        user: str | None = None,
    ) -> SessionCreated:
        body = _session_body(input, model=model, params=params, agent=agent, metadata=metadata, user=user)
        return SessionCreated.from_json(await self._call("POST", "/v1/sessions", body, keyed=True))

    async def send(self, session_id: str, input: str, *, multitask: str = "reject", **options: Any) -> str:
        """Queue a follow-up run; returns its id."""
        body = _run_body(input, multitask, options)
        return str((await self._call("POST", f"/v1/sessions/{session_id}/runs", body, keyed=True))["run_id"])

    async def cancel(self, session_id: str, run_id: str | None = None) -> str | None:
        """Cancel run `run_id` (the one you saw going: if it ended meanwhile, the next is left alone);
        without it, whatever run is active. The id of the run being cancelled, or None."""
        body = {"run_id": run_id} if run_id is not None else None
        cancelled: str | None = (await self._call("POST", f"/v1/sessions/{session_id}/cancel", body, safe=True))[
            "run_id"
        ]
        return cancelled

    async def steer(self, session_id: str, input: str, run_id: str | None = None) -> dict[str, str]:
        """Add `input` to the active run while it works (docs/steering.md): its agent takes it in at
        its next boundary, once. `run_id`: only that run, if it is still the active one. Returns
        `{"steer_id", "run_id", "status"}`; `ApiError` 409 `run_not_active` when no run is active."""
        body = {"input": input, **({"run_id": run_id} if run_id is not None else {})}
        accepted: dict[str, str] = await self._call("POST", f"/v1/sessions/{session_id}/steer", body, keyed=True)
        return accepted

    async def answer(self, session_id: str, run_id: str, input_id: str, answer: Any) -> int:
        """Answer the question a run asked (its `input.required` event); the `input.received` event's id."""
        body = {"input_id": input_id, "answer": answer}
        event_id: int = (await self._call("POST", f"/v1/sessions/{session_id}/runs/{run_id}/input", body))["event_id"]
        return event_id

    async def get_session(self, session_id: str) -> dict[str, Any]:
        state: dict[str, Any] = await self._call("GET", f"/v1/sessions/{session_id}")
        return state

    async def fork(
        self,
        session_id: str,
        after: int | None = None,
        *,
        at: int | None = None,
        go_on: bool | None = None,
        agent: str | None = None,
        model: str | None = None,
        params: dict[str, Any] | None = None,
        instructions: str | None = None,
    ) -> dict[str, Any]:
        """A new session holding this one's events up to `after` (0, or a run's terminal event: a
        turn's end), to go on from there; or up to `at`, any event (time travel): inside a run, the
        run goes on in the fork from there (`go_on`, the default there: its recorded tool results
        replayed, never run again), with `agent`, `model`, `params` and `instructions` changed for
        what it does from there on. The session itself is untouched. The fork, as `get_session`
        shows it (its `forked_from` names where it came from)."""
        options = {"continue": go_on, "agent": agent, "model": model, "params": params, "instructions": instructions}
        url, body = _fork_call(session_id, after, at, options)
        fork: dict[str, Any] = await self._call("POST", url, body, keyed=True)
        return fork

    async def stream(
        self,
        session_id: str,
        *,
        last_event_id: int | None = None,
        token: str | None = None,
        on_reconnect: Reconnecting | None = None,
        catch_up: CatchUp = "snapshot",
    ) -> AsyncIterator[Event]:
        """The session's events from `last_event_id` on, reconnecting after a dropped connection
        (`on_reconnect(error, delay)` is told before each wait), until the server answers 204.
        Far behind (from the start, or hundreds of events back), each block of text comes as one
        `message.delta` (`catch_up="snapshot"`, the server compacts them); `"events"`: every delta."""
        resume = Resumption(last_event_id, catch_up)
        url, headers = f"/v1/sessions/{session_id}/events", _headers(token)
        while not resume.ended:
            # A clean end of a connection: reconnect at once; a 204 says the session is really idle.
            try:
                async with contextlib.aclosing(self._connection(url, resume, headers)) as events:
                    async for event in events:
                        yield event
            except httpx2.TransportError as exc:
                await asyncio.sleep(_reconnect_delay(resume, exc, on_reconnect))

    async def _connection(self, url: str, resume: Resumption, headers: dict[str, str]) -> AsyncGenerator[Event]:
        """The events of one connection, until it ends; `resume.ended` once the server says 204."""
        async with self._http.sse(url, params=resume.params(), headers=headers) as source:
            if source.response.status_code >= 300:
                await source.response.aread()
            if _stream_status(source.response):
                resume.ended = True
                return
            async for sse in source:
                for event in _events(resume, sse):
                    yield event


class Tokentail:
    """The blocking twin of AsyncTokentail."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        http: httpx2.Client | None = None,
        retry_for: float = RETRY_FOR,
    ) -> None:
        timeout = httpx2.Timeout(10.0, read=None)
        self._http = http or httpx2.Client(base_url=base_url, timeout=timeout, headers=_headers(api_key))
        self._retry_for = retry_for

    def _call(
        self, method: str, url: str, body: dict[str, Any] | None = None, *, safe: bool = False, keyed: bool = False
    ) -> Any:
        headers, safe = _retry_rule(method, safe, keyed)
        retries = _Retries(self._retry_for)
        while True:
            outcome: httpx2.Response | httpx2.TransportError
            try:
                outcome = self._http.request(method, url, json=body, headers=headers)
            except httpx2.TransportError as exc:
                outcome = exc
            if (delay := retries.after(safe, outcome)) is None:
                return _json(outcome)
            time.sleep(delay)

    def __enter__(self) -> "Tokentail":
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def create_session(
        self,
        input: str | None = None,
        *,
        model: str | None = None,
        params: dict[str, Any] | None = None,
        agent: str | None = None,
        metadata: dict[str, Any] | None = None,
        user: str | None = None,
    ) -> SessionCreated:
        body = _session_body(input, model=model, params=params, agent=agent, metadata=metadata, user=user)
        return SessionCreated.from_json(self._call("POST", "/v1/sessions", body, keyed=True))

    def send(self, session_id: str, input: str, *, multitask: str = "reject", **options: Any) -> str:
        body = _run_body(input, multitask, options)
        return str(self._call("POST", f"/v1/sessions/{session_id}/runs", body, keyed=True)["run_id"])

    def cancel(self, session_id: str, run_id: str | None = None) -> str | None:
        """See `AsyncTokentail.cancel`."""
        body = {"run_id": run_id} if run_id is not None else None
        cancelled: str | None = self._call("POST", f"/v1/sessions/{session_id}/cancel", body, safe=True)["run_id"]
        return cancelled

    def steer(self, session_id: str, input: str, run_id: str | None = None) -> dict[str, str]:
        """See `AsyncTokentail.steer`."""
        body = {"input": input, **({"run_id": run_id} if run_id is not None else {})}
        accepted: dict[str, str] = self._call("POST", f"/v1/sessions/{session_id}/steer", body, keyed=True)
        return accepted

    def answer(self, session_id: str, run_id: str, input_id: str, answer: Any) -> int:
        """Answer the question a run asked (its `input.required` event); the `input.received` event's id."""
        body = {"input_id": input_id, "answer": answer}
        event_id: int = self._call("POST", f"/v1/sessions/{session_id}/runs/{run_id}/input", body)["event_id"]
        return event_id

    def get_session(self, session_id: str) -> dict[str, Any]:
        state: dict[str, Any] = self._call("GET", f"/v1/sessions/{session_id}")
        return state

    def fork(
        self,
        session_id: str,
        after: int | None = None,
        *,
        at: int | None = None,
        go_on: bool | None = None,
        agent: str | None = None,
        model: str | None = None,
        params: dict[str, Any] | None = None,
        instructions: str | None = None,
    ) -> dict[str, Any]:
        """See `AsyncTokentail.fork`."""
        options = {"continue": go_on, "agent": agent, "model": model, "params": params, "instructions": instructions}
        url, body = _fork_call(session_id, after, at, options)
        fork: dict[str, Any] = self._call("POST", url, body, keyed=True)
        return fork

    def stream(
        self,
        session_id: str,
        *,
        last_event_id: int | None = None,
        token: str | None = None,
        on_reconnect: Reconnecting | None = None,
        catch_up: CatchUp = "snapshot",
    ) -> Iterator[Event]:
        """As `AsyncTokentail.stream`, blocking."""
        resume = Resumption(last_event_id, catch_up)
        url, headers = f"/v1/sessions/{session_id}/events", _headers(token)
        while not resume.ended:
            try:
                with contextlib.closing(self._connection(url, resume, headers)) as events:
                    yield from events
            except httpx2.TransportError as exc:
                time.sleep(_reconnect_delay(resume, exc, on_reconnect))

    def _connection(self, url: str, resume: Resumption, headers: dict[str, str]) -> Generator[Event]:
        with self._http.sse(url, params=resume.params(), headers=headers) as source:
            if source.response.status_code >= 300:
                source.response.read()
            if _stream_status(source.response):
                resume.ended = True
                return
            for sse in source:
                yield from _events(resume, sse)
