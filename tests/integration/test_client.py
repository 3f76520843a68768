"""The Python client (async and sync) and `tokentail chat` against uvicorn and a real worker."""

import asyncio
import contextlib
import re
import shlex
import signal
import sys
import types
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, cast

import httpx2
import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from redis.asyncio import Redis

from tests.fixtures.stack import Gateway
from tests.support.waiting import eventually, scaled
from tokentail import ApiError, AsyncTokentail, Resumption, Tokentail, TokentailError
from tokentail.cli import main
from tokentail.client import _Retries, retried
from tokentail.redis_server import RedisServer, free_port
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.vocabulary.events import Event, MessageDelta, RunCompleted


async def test_both_clients_name_the_end_user_a_session_and_a_run_count_against(
    gateway: Gateway, redis: Redis, settings: Settings
) -> None:
    keys = Keys(settings.key_prefix)
    async with AsyncTokentail(gateway.url) as client:
        made = await client.create_session(user="ann")

    def sync_client() -> str:  # in a thread: the gateway serves on this test's loop
        with Tokentail(gateway.url) as client:
            made = client.create_session(user="bob")
            client.send(made.session_id, "hello", user="carol")  # a run's own user wins over its session's
            return made.session_id

    other = types.SimpleNamespace(session_id=await asyncio.to_thread(sync_client))
    meta = {
        await cast(Awaitable[bytes], redis.hget(keys.session(sid).meta, "user"))
        for sid in (made.session_id, other.session_id)
    }
    assert meta == {b"ann", b"bob"}
    [record] = (await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(keys.session(other.session_id).runs))).values()
    assert b'"user":"carol"' in record


async def test_async_client_streams_a_run_and_ends_at_204(gateway: Gateway, start_worker: Any) -> None:
    await start_worker()
    async with AsyncTokentail(gateway.url) as client:
        session = await client.create_session("hello", params={"tokens": 20})
        events = [event async for event in client.stream(session.session_id)]
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        assert isinstance(events[-1].typed(), RunCompleted) and events[-1].ends_run
        text = "".join(t.text for e in events if isinstance(t := e.typed(), MessageDelta))
        assert text == events[-1].data["output"]
        run_id = await client.send(session.session_id, "again", params={"tokens": 5})
        rest = [event async for event in client.stream(session.session_id, last_event_id=events[-1].id)]
        assert rest[0].data["run_id"] == run_id and rest[-1].event == "run.completed"
        assert (await client.get_session(session.session_id))["last_event_id"] == rest[-1].id
        assert await client.cancel(session.session_id) is None


async def test_the_stream_resumes_after_the_gateway_goes_away(start_gateway: Any, start_worker: Any) -> None:
    gateway: Gateway = await start_gateway()
    await start_worker()
    replacement: Gateway | None = None

    async def restart_later() -> None:
        nonlocal replacement
        await asyncio.sleep(0.5)  # meanwhile the client's reconnects fail, and it backs off
        replacement = await Gateway(gateway.settings, port=gateway.port).start()

    restarting: asyncio.Task[None] | None = None
    async with AsyncTokentail(gateway.url) as client:
        session = await client.create_session("hello", params={"tokens": 200, "tokens_per_second": 100})
        seen: list[Event] = []
        reconnects: list[tuple[Exception, float]] = []
        async for event in client.stream(session.session_id, on_reconnect=lambda *told: reconnects.append(told)):
            seen.append(event)
            if len(seen) == 5:
                await gateway.stop()  # the stream ends; the client retries until a gateway is back
                restarting = asyncio.create_task(restart_later())
    assert restarting is not None and replacement is not None
    await replacement.stop()
    assert [e.id for e in seen] == list(range(1, len(seen) + 1))
    assert seen[-1].event == "run.completed"
    assert reconnects and all(isinstance(error, Exception) and delay > 0 for error, delay in reconnects)


async def test_errors_carry_the_api_s_type_and_message(gateway: Gateway) -> None:
    async with AsyncTokentail(gateway.url) as client:
        with pytest.raises(ApiError) as info:
            await client.get_session("s_" + "x" * 22)
        assert (info.value.status, info.value.type) == (404, "session_not_found")
        with pytest.raises(TokentailError, match="unknown model provider"):
            await client.create_session("hi", model="nope:x")


def test_backoff_grows_and_resets_when_events_arrive() -> None:
    resume = Resumption(None, max_failures=3)
    delays = [resume.next_delay(OSError()) for _ in range(3)]
    assert delays[0] <= 0.5 and delays[2] > delays[0] / 2
    with pytest.raises(OSError):
        resume.next_delay(OSError())
    resume.seen(Event(id=9, event="message.delta", data={}))
    assert resume.failures == 0 and resume.params() == {"last_event_id": "9", "catch_up": "snapshot"}


async def test_sync_client_and_chat_command(gateway: Gateway, start_worker: Any) -> None:
    await start_worker()

    def sync_side() -> tuple[str, Any]:
        with Tokentail(gateway.url) as client:
            session = client.create_session("What is 6 * 7?", params={"tokens": 8, "tokens_per_second": 0})
            events = list(client.stream(session.session_id))
            assert events[-1].event == "run.completed" and "42" in events[-1].data["output"]
        result = CliRunner().invoke(
            main, ["chat", "--url", gateway.url, "--session", session.session_id, "and then?", "--param", "tokens=5"]
        )
        return session.session_id, result

    session_id, result = await asyncio.to_thread(sync_side)
    assert result.exit_code == 0, result.output
    answer = result.stdout.strip()
    assert answer.startswith('You asked: "and then?"') and 5 <= len(answer.split()) < 30  # only the new run's
    assert "[session " + session_id in result.stderr
    assert "HTTP Request" not in result.stderr  # no request log lines in the middle of the answer

    def ask_fresh() -> Any:
        return CliRunner().invoke(main, ["chat", "--url", gateway.url, "What is 2 + 2?"])

    fresh = await asyncio.to_thread(ask_fresh)
    assert fresh.exit_code == 0 and "The calculator says 4." in fresh.stdout
    assert "[running calculator" in fresh.stderr


async def test_chat_tells_how_to_give_the_key_a_gateway_asks_for(start_gateway: Any) -> None:
    gateway: Gateway = await start_gateway(api_keys=SecretStr("acme:" + "k" * 24), secret=SecretStr("s" * 32))
    result = await asyncio.to_thread(CliRunner().invoke, main, ["chat", "--url", gateway.url, "hello"])
    assert result.exit_code == 1
    assert "(401)" in result.stderr and "--api-key" in result.stderr


async def test_the_readme_s_chat_and_its_follow_up_get_answers_that_make_sense(
    gateway: Gateway, start_worker: Any
) -> None:
    await start_worker()

    def ask(*args: str) -> Any:
        return CliRunner().invoke(main, ["chat", "--url", gateway.url, *args])

    first = await asyncio.to_thread(ask, "What is 12 * (3 + 4)?")
    assert first.stdout.strip() == "Let me calculate that. The calculator says 84.", first.output
    found = re.search(r"--session (s_\S+)", first.stderr)
    assert found is not None
    follow_up = await asyncio.to_thread(ask, "--session", found.group(1), "and times two?")
    assert follow_up.stdout.strip() == "Let me calculate that. The calculator says 168.", follow_up.output


async def test_chat_s_continue_with_line_works_as_printed_on_a_gateway_that_is_not_the_default(
    gateway: Gateway, start_worker: Any
) -> None:
    await start_worker()
    key = "k" * 24  # the line must not show a key typed on the command line
    first = await asyncio.to_thread(
        CliRunner(env={"TOKENTAIL_API_KEY": None}).invoke, main, ["chat", "--url", gateway.url, "What is 2 + 2?"]
    )
    assert first.exit_code == 0, first.output
    found = re.search(r"continue with  (.+) \"\.\.\.\"\]", first.stderr)
    assert found is not None, first.stderr
    printed = shlex.split(found.group(1))
    assert printed[:2] == ["tokentail", "chat"] and "--url" in printed
    follow_up = await asyncio.to_thread(CliRunner().invoke, main, [*printed[1:], "and times two?"])
    assert follow_up.stdout.strip() == "Let me calculate that. The calculator says 8.", follow_up.output
    with_key = await asyncio.to_thread(
        CliRunner().invoke, main, ["chat", "--url", gateway.url, "--api-key", key, "hello", "--param", "tokens=3"]
    )
    assert with_key.exit_code == 0, with_key.output
    assert key not in with_key.stderr and "--api-key '<your key>' --session s_" in with_key.stderr


@pytest.mark.usefixtures("gates")
async def test_ctrl_c_mid_answer_says_which_session_goes_on_and_how_to_follow_it(
    start_gateway: Any, start_worker: Any
) -> None:
    held = {"agents": {"held": "tests.support.gates:held"}}  # its run waits at its gate (tests/support/gates.py)
    gateway: Gateway = await start_gateway(**held)
    await start_worker(**held)
    chat = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tokentail.cli", "chat", "--url", gateway.url, "hello", "--agent", "held",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert chat.stdout is not None
    await asyncio.wait_for(chat.stdout.read(5), scaled(30))  # mid-answer
    chat.send_signal(signal.SIGINT)
    _, stderr = await asyncio.wait_for(chat.communicate(), scaled(30))
    said = stderr.decode()
    found = re.search(
        rf"the run goes on in session (s_\S+): replay and follow it with  tokentail chat --url {gateway.url}"
        r" --session \1\]",
        said,
    )
    assert chat.returncode == 130 and found, said
    async with AsyncTokentail(gateway.url) as client:
        assert (await client.get_session(found.group(1)))["runs"][-1]["status"] == "running"  # not cancelled


class Answers:
    """The status and error type of each answer a client got, from an httpx2 event hook."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str | None]] = []  # (method, status, error type)

    async def __call__(self, response: httpx2.Response) -> None:
        await response.aread()
        error = response.json().get("error") if response.status_code >= 400 else None
        self.seen.append((response.request.method, response.status_code, error and error["type"]))

    def client(self, gateway: Gateway) -> AsyncTokentail:
        http = httpx2.AsyncClient(base_url=gateway.url, timeout=10, event_hooks={"response": [self]})
        return AsyncTokentail(gateway.url, http=http)


@contextlib.asynccontextmanager
async def _read_only(redis: Redis) -> AsyncIterator[None]:
    """Redis refuses writes, as a primary demoted in a failover does: a replica of a primary that is
    not there (it keeps its data until it syncs, which it never does)."""
    await redis.replicaof("127.0.0.1", free_port())
    try:
        yield
    finally:
        await redis.replicaof("NO", "ONE")


async def test_create_session_and_send_wait_out_a_failover_s_read_only_redis_and_do_it_once(
    private_redis_url: str, start_gateway: Any, settings: Settings
) -> None:
    gateway: Gateway = await start_gateway(redis_url=private_redis_url)
    answers = Answers()
    redis = Redis.from_url(private_redis_url)
    try:
        async with answers.client(gateway) as client:
            async with _read_only(redis):
                creating = asyncio.ensure_future(client.create_session(None))
                await eventually(lambda: ("POST", 503, "redis_read_only") in answers.seen, within=20)
            session = await creating  # sent again after the Retry-After, once Redis took writes again
            async with _read_only(redis):
                sending = asyncio.ensure_future(client.send(session.session_id, "hello", params={"tokens": 5}))
                await eventually(lambda: answers.seen[-1] == ("POST", 503, "redis_read_only"), within=20)
            run_id = await sending
            state = await client.get_session(session.session_id)
        assert [run["run_id"] for run in state["runs"]] == [run_id]  # one run: nothing was done twice
        assert len(await redis.keys(Keys(settings.key_prefix).session("*").meta)) == 1  # one session
        assert [status for _, status, _ in answers.seen].count(201) == 1
    finally:
        await redis.aclose()


async def test_writes_and_reads_wait_out_redis_gone_and_do_nothing_twice(
    tmp_path: Path, start_gateway: Any, settings: Settings
) -> None:
    # Regression: a 503 `redis_unavailable` (the script may have run before the connection broke)
    # was raised to the caller of create_session and send; now they carry an idempotency key and wait.
    server = RedisServer(tmp_path, appendonly=True).start()
    try:
        gateway: Gateway = await start_gateway(redis_url=server.url)
        answers = Answers()
        async with answers.client(gateway) as client:
            session = await client.create_session(None)
            await asyncio.to_thread(server.stop)  # SIGTERM: the AOF has the session when it starts again
            answers.seen.clear()
            creating = asyncio.ensure_future(client.create_session("hello"))
            sending = asyncio.ensure_future(client.send(session.session_id, "hi"))
            reading = asyncio.ensure_future(client.get_session(session.session_id))
            await eventually(lambda: answers.seen.count(("POST", 503, "redis_unavailable")) >= 2, within=20)
            server = RedisServer(tmp_path, port=server.port, appendonly=True).start()
            created, run_id, state = await asyncio.gather(creating, sending, reading)
            assert state["session_id"] == session.session_id
            assert [run["run_id"] for run in (await client.get_session(session.session_id))["runs"]] == [run_id]
            assert [run["run_id"] for run in (await client.get_session(created.session_id))["runs"]] == [created.run_id]
        assert {(method, status) for method, status, _ in answers.seen} >= {("POST", 201), ("POST", 202), ("GET", 200)}
        redis = Redis.from_url(server.url)
        try:
            assert len(await redis.keys(Keys(settings.key_prefix).session("*").meta)) == 2  # made once each
        finally:
            await redis.aclose()
    finally:
        server.stop()


async def test_a_write_whose_answer_was_lost_is_sent_again_and_made_once(
    start_gateway: Any, settings: Settings, redis: Redis
) -> None:
    """The worst instant: the gateway did it, and the connection broke before its answer arrived."""
    gateway: Gateway = await start_gateway()
    async with _LosingProxy(gateway.port, lose=2) as proxy, AsyncTokentail(proxy.url) as client:
        created = await client.create_session("hello", params={"tokens": 3})  # its first answer lost
        run_id = await client.send(created.session_id, "again", multitask="enqueue")  # and this one's
        assert proxy.lost == 2
        state = await client.get_session(created.session_id)
    assert [run["run_id"] for run in state["runs"]] == [created.run_id, run_id]  # one run each
    assert len(await redis.keys(Keys(settings.key_prefix).session("*").meta)) == 1  # one session


class _LosingProxy:
    """A TCP proxy to the gateway that forwards requests and, for the first `lose` connections,
    closes the client's connection instead of passing the answer on: done, and the answer lost."""

    def __init__(self, port: int, lose: int) -> None:
        self.port, self.left, self.lost = port, lose, 0
        self.url = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> "_LosingProxy":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        gateway_in, gateway_out = await asyncio.open_connection("127.0.0.1", self.port)
        losing = self.left > 0
        self.left -= losing

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, drop: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    if drop:  # the gateway answered: the client never hears it
                        self.lost += 1
                        break
                    sink.write(data)
                    await sink.drain()
            sink.close()

        tasks = [
            asyncio.ensure_future(pipe(client_in, gateway_out, False)),
            asyncio.ensure_future(pipe(gateway_in, client_out, losing)),
        ]
        self._tasks.update(tasks)
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        client_out.close()
        gateway_out.close()


async def test_a_call_whose_connection_could_not_be_made_is_sent_again(settings: Settings) -> None:
    port = free_port()  # nothing listens there yet
    gateway = Gateway(settings, port=port)
    async with AsyncTokentail(gateway.url) as client:
        creating = asyncio.ensure_future(client.create_session(None))
        await asyncio.sleep(0.3)  # a try or two fail to connect meanwhile
        await gateway.start()
        try:
            session = await creating
            assert (await client.get_session(session.session_id))["status"] == "idle"
        finally:
            await gateway.stop()


@pytest.mark.parametrize(
    ("safe", "status", "type_", "again"),
    [
        (True, 503, "redis_unavailable", True),  # a read, a keyed write or a cancel: on any passing failure
        (True, 502, "http_error", True),
        (True, 504, "http_error", True),
        (True, 429, "rate_limited", True),
        (True, 404, "session_not_found", False),
        (True, 409, "run_conflict", False),
        (False, 429, "rate_limited", True),  # any other write: refused before anything is written
        (False, 503, "redis_read_only", True),  # Redis refused the write
        (False, 503, "redis_full", True),
        (False, 503, "redis_unavailable", False),  # the script may have run before the connection broke
        (False, 502, "http_error", False),  # a proxy's: the gateway may have done it
        (False, 504, "http_error", False),
    ],
)
def test_which_answers_a_rest_call_is_sent_again_after(safe: bool, status: int, type_: str, again: bool) -> None:
    assert retried(safe, ApiError(status, type_, "")) is again


def test_which_lost_connections_a_rest_call_is_sent_again_after() -> None:
    never_made, lost_mid_call = httpx2.ConnectError("refused"), httpx2.ReadError("reset")
    assert retried(False, never_made) and retried(True, never_made)
    assert retried(True, lost_mid_call) and not retried(False, lost_mid_call)


def test_a_retry_after_past_the_time_left_is_not_waited_for() -> None:
    retries = _Retries(retry_for=3.0)
    assert retries.delay(2.0) == 2.0
    assert retries.delay(4.0) is None  # the caller gets the error now, not in 4 s
    assert _Retries(retry_for=0.0).delay(None) is None  # retry_for=0: never sent again
