"""Property-based fuzzing of the HTTP API, generated from the gateway's OpenAPI schema.

schemathesis turns the document the gateway serves at `/openapi.json` into one test per operation
and sends each operation's requests to a real gateway (uvicorn on loopback, real Redis): its
examples and coverage phases (boundary values, missing and wrongly typed fields), then
`MAX_EXAMPLES` generated ones (an event stream's operation: `STREAM_MAX_EXAMPLES`), valid and
invalid. Every response must pass schemathesis' checks (no 5xx, a documented status, content type,
headers and body, invalid data rejected) and ours: no stack trace or internal detail in any body,
and every error as JSON `{"error": {"type": str, "message": str}}`.

Each operation gets a gateway, a Redis key prefix and seeded sessions of its own: about half its
cases on `/v1/sessions/{session_id}...` (and the console's `/v1/admin/sessions/{session_id}...`) name
one of them (finished with a completed and a failed run, running with partial text, waiting for the
answer to a question, queued, empty, deleted, or a well-formed id never created), a path with a run id
too one of their runs (and a question's path, its question), so the fuzzer drives the real code paths
and not only the 404 of a malformed id; event stream cases often resume from an id near the stream's.
No worker runs: the fixture plays the worker through the store. A destructive case (a delete, a cancel,
an answer) changes only its own operation's sessions: each operation has its own.

The gateway runs on an event loop in a thread of its own while the (synchronous) fuzzer blocks
this one. The event stream of a session with an active run never ends by itself: schemathesis reads
an event stream until its request timeout has passed in total, so `EVENTS_TIMEOUT` bounds it.

Auth is on, as in production, and every request carries an API key; the console's admin API
(`/v1/admin/...`) gets an admin key (`TOKENTAIL_ADMIN_KEYS`: every tenant) instead, as the console
sends (`AUTH = False` fuzzes an open gateway instead, whose admin API is open on loopback). Refusals of
missing, foreign and expired credentials are tested in test_auth.py (the admin API's in
test_admin*.py).
"""

import asyncio
import contextlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from pydantic import SecretStr
from redis.asyncio import Redis
from schemathesis import Case, Response
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.config import OperationConfig
from schemathesis.filters import FilterSet
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from tests.fixtures.stack import Gateway
from tests.support.waiting import scaled
from tests.support.writes import AllWrites
from tokentail.gateway.access.ids import new_session_id
from tokentail.gateway.app import create_app
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.scripts.runs import Asked
from tokentail.shared.vocabulary.events import MessageDelta, RunCompleted, RunFailed
from tokentail.shared.vocabulary.records import Question
from tokentail.worker.writes.run_writes import RunLease

T = TypeVar("T")

# Hypothesis caches what it learns from the source and the unicode tables under `.hypothesis/` in
# the working directory, the repository, and schemathesis builds its coverage cases while pytest
# collects this module: point it at a temporary directory before that. (The example database,
# the other thing it would write there, is off: `database=None` below.)
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "tokentail-hypothesis")

MAX_EXAMPLES = 60  # generated cases per operation, on top of the examples and coverage phases
# An event stream's operation, fewer: its cases that open a stream that does not end (a running or waiting
# session's) each read it for EVENTS_TIMEOUT, 20 s an operation at 60. Its examples and coverage phases,
# and the stream's own code paths (resume ids, the seeded sessions) are the same for every protocol.
STREAM_MAX_EXAMPLES = 20
EVENTS_TIMEOUT = 1.0  # seconds an event stream that does not end by itself is read
# The console's live stream never ends, and its first event (the overview, computed with the followed
# run's timeline) comes at once: its reading ends there (`FIRST_EVENT_ONLY`), else after this.
ADMIN_STREAM_TIMEOUT = 0.5
REQUEST_TIMEOUT = 10.0
LEASE = "fuzz-lease"

# -- credentials: the one place for them ---------------------------------------------------------

AUTH = True  # as production runs: API keys on, every request carries one (False: auth off, tenant `public`)
API_KEY = "fuzz-key-0123456789abcdef"
ADMIN_KEY = "fuzz-admin-key-0123456789abcdef"  # what the console sends to /v1/admin/...
ADMIN_PATHS = "/v1/admin/"
ADMIN_STREAM = "GET /v1/admin/stream"  # the console's live stream


@pytest.fixture
def gateway_settings(settings: Settings) -> Settings:
    """The test's settings (its own Redis key prefix), with an API key if `AUTH`."""
    if not AUTH:
        return settings
    keys = {"api_keys": SecretStr(f"fuzz:{API_KEY}"), "admin_keys": SecretStr(f"fuzzadmin:{ADMIN_KEY}")}
    return settings.model_copy(update={**keys, "secret": SecretStr("s" * 32)})


@pytest.fixture
def api_headers() -> dict[str, str]:
    """Headers every request of this test sends (the schema check, the seeding and every case) but
    the admin API's."""
    return {"Authorization": f"Bearer {API_KEY}"} if AUTH else {}


def headers_for(path: str, api_headers: dict[str, str]) -> dict[str, str]:
    """What a case on `path` sends: the admin key on the admin API (with auth off: nothing, loopback)."""
    if not path.startswith(ADMIN_PATHS):
        return api_headers
    return {"Authorization": f"Bearer {ADMIN_KEY}"} if AUTH else {}


# -- the gateway, on an event loop of its own ----------------------------------------------------


class LoopThread:
    """An asyncio loop on a thread, serving the gateway while the synchronous fuzzer blocks the test's."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), name="fuzz-gateway", daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()

    def __enter__(self) -> "LoopThread":
        self._thread.start()
        assert self._ready.wait(10), "the gateway's event loop did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def run(self, coroutine: Awaitable[T], timeout: float = 30) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)  # type: ignore[arg-type]


class FuzzTarget:
    """A running gateway, and the sessions that seed its cases."""

    def __init__(self, gateway: Gateway, loop: LoopThread, headers: dict[str, str]) -> None:
        self.gateway = gateway
        self.url = gateway.url
        self.headers = headers
        self._loop = loop
        self._http = httpx2.Client(base_url=gateway.url, headers=headers, timeout=REQUEST_TIMEOUT)

    def close(self) -> None:
        self._http.close()

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self._http.post("/v1/sessions", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def seed(self) -> "Seeded":
        """Sessions in every state: made through the API, with the store playing the worker."""
        request = {"model": "scripted", "params": {"tokens": 5}, "metadata": {"user": "fuzz"}}
        empty = self._create({"metadata": {"user": "fuzz"}})["session_id"]
        queued = self._create({"input": "hello", **request})
        running = self._create({"input": "count to five", **request})
        waiting = self._create({"input": "ask me first", **request})
        finished = self._create({"input": "what is 2 + 2?", **request})
        deleted = self._create({"input": "forget me", **request})
        self._loop.run(self._play_worker(running, finished))
        self._loop.run(self._ask(waiting))
        follow_up = self._http.post(f"/v1/sessions/{finished['session_id']}/runs", json={"input": "and then?"})
        assert follow_up.status_code == 202, follow_up.text
        self._loop.run(self._fail(finished["session_id"], follow_up.json()["run_id"]))
        assert self._http.delete(f"/v1/sessions/{deleted['session_id']}").status_code == 204
        unknown = new_session_id()
        # Richest first: Hypothesis draws the first elements of a `sampled_from` more often.
        sessions = [finished, running, waiting, queued]
        runs = [(s["session_id"], s["run_id"]) for s in sessions]
        runs.insert(1, (finished["session_id"], follow_up.json()["run_id"]))
        runs.append((deleted["session_id"], deleted["run_id"]))
        return Seeded(
            sessions=[*(s["session_id"] for s in sessions), empty, deleted["session_id"], unknown],
            runs=runs,
            questions=[(waiting["session_id"], waiting["run_id"], QUESTION.input_id)],
        )

    async def _play_worker(self, running: dict[str, Any], finished: dict[str, Any]) -> None:
        async with self._runs() as runs:
            for session, end in ((running, False), (finished, True)):
                sid, run_id = session["session_id"], session["run_id"]
                assert await runs.start_run(sid, run_id, run_id, token=LEASE) is not None
                events = [
                    ("message.delta", MessageDelta(run_id=run_id, text=text).model_dump_json()) for text in "1234"
                ]
                usage = {"input_tokens": 5, "output_tokens": 4}
                done = RunCompleted(run_id=run_id, output="1234", usage=usage) if end else None
                await RunLease(runs, sid, run_id, LEASE).append(events, ending=done)

    async def _ask(self, session: dict[str, Any]) -> None:
        """The run streams a little, then waits for the answer to a question."""
        async with self._runs() as runs:
            sid, run_id = session["session_id"], session["run_id"]
            assert await runs.start_run(sid, run_id, run_id, token=LEASE) is not None
            lease = RunLease(runs, sid, run_id, LEASE)
            await lease.append([("message.delta", MessageDelta(run_id=run_id, text="Let me ask").model_dump_json())])
            assert await lease.ask([QUESTION], [QUESTION]) is Asked.WAITING

    async def _fail(self, session_id: str, run_id: str) -> None:
        async with self._runs() as runs:
            assert await runs.start_run(session_id, run_id, run_id, token=LEASE) is not None
            error = {"type": "provider_error", "message": "the model went away"}
            failed = RunFailed.model_validate({"run_id": run_id, "error": error})
            await RunLease(runs, session_id, run_id, LEASE).append([], ending=failed)

    @contextlib.asynccontextmanager
    async def _runs(self) -> Any:
        settings = self.gateway.settings
        redis = Redis.from_url(str(settings.redis_url))
        try:
            yield AllWrites(redis, settings)
        finally:
            await redis.aclose()


QUESTION = Question(input_id="in_fuzz", kind="text", prompt="Which colour?", answer_schema={"type": "string"})


class Seeded(NamedTuple):
    sessions: list[str]
    runs: list[tuple[str, str]]  # (session id, run id)
    questions: list[tuple[str, str, str]]  # (session id, run id, input id): asked, not answered


# Every operation's gateway is the same app with the same settings: the document it serves is checked
# on the first only (making it costs each gateway half a second of CPU).
SERVED_SCHEMA_CHECKED = threading.Event()
# The seeded sessions of the running test, read by the hooks below each time a case is drawn.
SEEDED = Seeded([], [], [])


@pytest.fixture
def fuzz_target(gateway_settings: Settings, api_headers: dict[str, str]) -> Iterator[FuzzTarget]:
    with LoopThread() as loop:
        gateway = Gateway(gateway_settings)
        loop.run(gateway.start())
        target = FuzzTarget(gateway, loop, api_headers)
        try:
            if not SERVED_SCHEMA_CHECKED.is_set():
                served = httpx2.get(f"{target.url}/openapi.json", headers=api_headers, timeout=scaled(REQUEST_TIMEOUT))
                assert served.json() == OPENAPI, "the gateway serves another schema than the one the cases come from"
                SERVED_SCHEMA_CHECKED.set()
            seeded = target.seed()
            SEEDED.sessions[:], SEEDED.runs[:], SEEDED.questions[:] = seeded
            yield target
        finally:
            for seeded_list in (SEEDED.sessions, SEEDED.runs, SEEDED.questions):
                seeded_list.clear()
            target.close()
            loop.run(gateway.stop())


# The document the gateway serves at /openapi.json, taken from the app when pytest collects this
# module (`@schema.parametrize()` needs it then); the fixture checks the live gateway serves this
# very document. (`schemathesis.pytest.from_fixture` would load it from the live server instead,
# but schemathesis 4.32 sets `Function._nodeid` there, which pytest 9.2 no longer has.)
OPENAPI: dict[str, Any] = create_app(Settings()).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)
# The credentials are this test's (`headers_for`), on every case: schemathesis must not make the
# security schemes into parameters of its own. Where an operation has one scheme only (the admin API's
# bearer), it would send a case without it as invalid data, which the key the test adds then makes valid.
schema.config.generation.update(with_security_parameters=False)
# The console's live stream is read up to its first event, not for ADMIN_STREAM_TIMEOUT: after it nothing
# new comes (the seeded state does not change), and the wait cost half a second a case.
FIRST_EVENT_ONLY = FilterSet()
FIRST_EVENT_ONLY.include(name=ADMIN_STREAM)
schema.config.operations.operations.append(OperationConfig(filter_set=FIRST_EVENT_ONLY, max_stream_events=1))


ANSWERS = "POST /v1/admin/sessions/{session_id}/runs/{run_id}/answers"


@schema.hook
def flatmap_path_parameters(ctx: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    """Half the cases keep the generated ids, half name one of the running test's sessions (with a run
    id too: one of its runs; with a question's id too: its question)."""
    if not SEEDED.sessions or not path_parameters or "session_id" not in path_parameters:
        return st.just(path_parameters)
    params = path_parameters
    seeded: st.SearchStrategy[Any]
    answers = ctx.operation is not None and ctx.operation.label == ANSWERS
    if ("input_id" in params or answers) and "run_id" in params:
        seeded = st.sampled_from(list(SEEDED.questions)).map(
            lambda q: {
                **params,
                "session_id": q[0],
                "run_id": q[1],
                **({"input_id": q[2]} if "input_id" in params else {}),
            }
        )
    elif "run_id" in params:
        seeded = st.sampled_from(list(SEEDED.runs)).map(lambda r: {**params, "session_id": r[0], "run_id": r[1]})
    else:
        seeded = st.sampled_from(list(SEEDED.sessions)).map(lambda sid: {**params, "session_id": sid})
    return st.one_of(st.just(params), seeded)


# Resume positions around the seeded streams' ids (1 to 7): a generated string is nearly always a 400.
EVENTS = "GET /v1/sessions/{session_id}/events"
EVENT_IDS = st.integers(min_value=0, max_value=12).map(str)
FIND = "GET /v1/admin/find"
# The runs list's cursors: `<µs> <session> <run>`, with what float() takes beside a whole number (issue 84:
# `nan` answered 500); a generated string is nearly always no cursor at all.
RUNS = "GET /v1/admin/runs"
CURSORS = st.sampled_from(["1764000000000000", "nan", "inf", "1e400", "-1", "1.5"]).map(
    lambda score: f"{score} s_x r_x"
)


@schema.hook
def flatmap_query(ctx: Any, query: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    """Some event stream cases resume with `?last_event_id=<an id of the stream or near it>`; some of the
    console's runs lists go on from a cursor or something near one, some of its searches look for a
    seeded session or run id, and some of its live streams follow a seeded run."""
    label = ctx.operation.label if ctx.operation is not None else None
    if label == EVENTS:
        return st.one_of(st.just(query), EVENT_IDS.map(lambda id_: {**(query or {}), "last_event_id": id_}))
    if label == FIND and SEEDED.runs:
        ids = [id_ for pair in SEEDED.runs for id_ in pair]
        return st.one_of(st.just(query), st.sampled_from(ids).map(lambda id_: {**(query or {}), "q": id_}))
    if label == RUNS:
        return st.one_of(st.just(query), CURSORS.map(lambda cursor: {**(query or {}), "cursor": cursor}))
    if label == ADMIN_STREAM and SEEDED.runs:
        followed = st.sampled_from(list(SEEDED.runs)).map(lambda r: {**(query or {}), "session": r[0], "run": r[1]})
        return st.one_of(st.just(query), followed)
    return st.just(query)


@schema.hook
def flatmap_body(ctx: Any, body: Any) -> st.SearchStrategy[Any]:
    """Some of the console's answers name the seeded question, so that an answer can be taken (its
    schema asks for a string), not only refused. Only a body valid in its shape is changed (an input id
    for another): an invalid one must stay invalid."""
    if ctx.operation is None or ctx.operation.label != ANSWERS or not SEEDED.questions:
        return st.just(body)
    if not isinstance(body, dict) or not isinstance(body.get("input_id"), str) or "answer" not in body:
        return st.just(body)
    asked = {**body, "input_id": SEEDED.questions[0][2]}
    return st.one_of(st.just(body), st.just(asked), st.text(max_size=20).map(lambda text: {**asked, "answer": text}))


@schema.hook
def flatmap_headers(ctx: Any, headers: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    """Some event stream cases resume with `Last-Event-ID: <an id of the stream or near it>`."""
    if ctx.operation is None or ctx.operation.label != EVENTS:
        return st.just(headers)
    return st.one_of(st.just(headers), EVENT_IDS.map(lambda id_: {**(headers or {}), "Last-Event-ID": id_}))


# -- our checks, on top of schemathesis' own ------------------------------------------------------

# What must never reach a client: a traceback, or the name of an exception from Python, redis-py or
# pydantic (the gateway logs those; the client gets `internal_error`).
INTERNALS = re.compile(
    r"Traceback|File \"|\bline \d+, in\b|redis\.exceptions|pydantic_core|errors\.pydantic\.dev|"
    r"\b(?:ValidationError|ResponseError|RedisError|ConnectionError|TimeoutError|DataError|"
    r"ValueError|TypeError|KeyError|AttributeError|RuntimeError|AssertionError|RecursionError|"
    r"UnicodeEncodeError|UnicodeDecodeError|JSONDecodeError|LeaseLost|TokentailError)\b"
)


def no_internal_details(ctx: CheckContext, response: Response, case: Case[Any]) -> None:
    match = INTERNALS.search(response.text or "")
    assert match is None, f"the response body gives away internals ({match and match.group()!r}): {response.text!r}"


def errors_are_json_error_bodies(ctx: CheckContext, response: Response, case: Case[Any]) -> None:
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"error with content type {content_type!r}"
    try:
        body = json.loads(response.text)
    except ValueError:
        raise AssertionError(f"error body is not JSON: {response.text!r}") from None
    assert isinstance(body, dict) and set(body) == {"error"}, f"not an error body: {body!r}"
    error = body["error"]
    shape = {"type", "message", "param", "code"}  # OpenAI's, which its SDKs read
    assert isinstance(error, dict) and set(error) == shape, f"not an error body: {body!r}"
    assert isinstance(error["type"], str) and error["type"], f"error type is not a non-empty string: {body!r}"
    assert error["code"] == error["type"] and error["param"] is None, f"not an error body: {body!r}"
    assert isinstance(error["message"], str), f"error message is not a string: {body!r}"


CHECKS: list[Callable[..., Any]] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    allow_header_conformance,  # a 405's Allow names every method of the path (it named one route's)
    unsupported_method,
    response_schema_conformance,
    negative_data_rejection,
    no_internal_details,
    errors_are_json_error_bodies,
]


SETTINGS = settings(
    deadline=None,
    derandomize=True,  # the same cases on every run, here and in CI
    database=None,  # and no .hypothesis/ directory in the repository
    # One gateway and one set of seeded sessions serve all the cases of an operation.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def streams(raw_operation: dict[str, Any]) -> bool:
    """Whether the operation answers with an event stream (one that may not end by itself)."""
    return "text/event-stream" in raw_operation["responses"].get("200", {}).get("content", {})


def _is_stream(ctx: Any) -> bool:
    return streams(ctx.operation.definition.raw)


@settings(SETTINGS, max_examples=MAX_EXAMPLES)
@schema.exclude(func=_is_stream).parametrize()
def test_api_fuzz(case: Case[Any], fuzz_target: FuzzTarget) -> None:
    _call_and_validate(case, fuzz_target)


@settings(SETTINGS, max_examples=STREAM_MAX_EXAMPLES)
@schema.include(func=_is_stream).parametrize()
def test_api_fuzz_streams(case: Case[Any], fuzz_target: FuzzTarget) -> None:
    _call_and_validate(case, fuzz_target)


def _call_and_validate(case: Case[Any], fuzz_target: FuzzTarget) -> None:
    case.call_and_validate(
        base_url=fuzz_target.url,
        headers=headers_for(case.operation.path, fuzz_target.headers),
        checks=CHECKS,
        timeout=timeout_for(case),
    )


def timeout_for(case: Case[Any]) -> float:
    """An event stream may not end by itself (no worker runs here): it is read for EVENTS_TIMEOUT (the
    console's, ADMIN_STREAM_TIMEOUT)."""
    # A case with a method the path does not have (a TRACE of the coverage phase) is answered 405, which
    # ends: bounded by the stream's second it failed once on a busy gateway before its headers came.
    if not streams(case.operation.definition.raw) or case.method.upper() != case.operation.method.upper():
        return REQUEST_TIMEOUT
    return ADMIN_STREAM_TIMEOUT if case.operation.label == ADMIN_STREAM else EVENTS_TIMEOUT
