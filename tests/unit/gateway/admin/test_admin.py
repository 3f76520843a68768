"""The operator console's parts that need no server: who may look, the runs index's pages (cursors
through equal scores, filters, the scan budget), the throughput the workers' samples make, and a run's
stages from its events (a takeover, a question, a tool call)."""

from typing import Any

import fakeredis
import pytest
from pydantic import SecretStr

from tokentail.gateway.access.peers import PEER, ClientAddresses
from tokentail.gateway.access.tokens import StreamTokens
from tokentail.gateway.admin.access import Admin, AdminAuth
from tokentail.gateway.admin.live import MAX_STREAMS, LiveStreams, Snapshots
from tokentail.gateway.admin.timeline import Stages
from tokentail.shared.features.workers import STEP_SECONDS, Sample, WorkerBeat, WorkerRegistry, throughput
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.run_index import SCAN_BUDGET, IndexedRun, RunIndex
from tokentail.shared.vocabulary.errors import Forbidden, RateLimited, Unauthorized
from tokentail.shared.vocabulary.records import RunRecord

ADMIN_KEY = "ops-key-0123456789abcdef"
KEY_A = "acme-key-0123456789abcdef"
KEY_B = "beta-key-0123456789abcdef"
SECRET = "s" * 40


def test_with_auth_off_the_console_is_open_on_this_machine_only(settings: Settings) -> None:
    auth = AdminAuth(settings)
    assert auth.admin_of(None, this_machine=True) == Admin("local", None)
    with pytest.raises(Forbidden, match="TOKENTAIL_ADMIN_KEYS"):
        auth.admin_of(None, this_machine=False)


async def _this_machine(trusted: list[str], peer: str | None, forwarded_for: str | None = None) -> bool:
    """What the gateway decides of a request from `peer` (the socket's), carrying `forwarded_for`."""
    headers = [(b"x-forwarded-for", forwarded_for.encode())] if forwarded_for is not None else []
    scope: dict[str, Any] = {"type": "http", "client": (peer, 40000) if peer else None, "headers": headers}
    addresses = ClientAddresses(trusted)
    await addresses.resolve(scope)
    return addresses.is_this_machine(scope)


LOOPBACK = ["127.0.0.1", "::1"]  # TOKENTAIL_TRUSTED_PROXIES's default


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded_for", "local"),
    [
        (LOOPBACK, "127.0.0.1", None, True),
        (LOOPBACK, "::1", None, True),
        (LOOPBACK, "127.0.0.2", None, True),
        # Issue 84: a client elsewhere writing the header itself is never this machine, whoever is trusted.
        (LOOPBACK, "192.0.2.7", "127.0.0.1", False),
        (["0.0.0.0/0"], "192.0.2.7", "127.0.0.1", False),
        (LOOPBACK, "192.0.2.7", None, False),
        (LOOPBACK, None, None, False),
        (LOOPBACK, "not-an-address", None, False),
        # A named proxy on this machine: its client is believed, the rightmost entry it did not write itself.
        (LOOPBACK, "127.0.0.1", "127.0.0.1", True),
        (LOOPBACK, "127.0.0.1", "192.0.2.7", False),
        (LOOPBACK, "127.0.0.1", "127.0.0.1, 192.0.2.7", False),  # nginx appending to what the client wrote
        # A proxy on this machine nobody named (TOKENTAIL_TRUSTED_PROXIES empty): its clients may be anywhere.
        ([], "127.0.0.1", "127.0.0.1", False),
        ([], "127.0.0.1", None, True),
        # compose: nginx on the network, named: a client behind it is not on the gateway's machine.
        (["172.16.0.0/12"], "172.18.0.5", "127.0.0.1", False),
    ],
)
async def test_this_machine_is_the_socket_s_peer_or_a_named_proxy_s_client(
    trusted: list[str], peer: str | None, forwarded_for: str | None, local: bool
) -> None:
    assert await _this_machine(trusted, peer, forwarded_for) is local


async def test_a_named_proxy_s_client_and_scheme_are_the_request_s() -> None:
    scope: dict[str, Any] = {
        "type": "http",
        "scheme": "http",
        "client": ("10.0.0.5", 40000),
        "headers": [(b"x-forwarded-for", b"127.0.0.1, 203.0.113.9"), (b"x-forwarded-proto", b"https")],
    }
    addresses = ClientAddresses(["10.0.0.0/8"])
    await addresses.resolve(scope)
    assert (scope["client"][0], scope["scheme"], scope[PEER]) == ("203.0.113.9", "https", ("10.0.0.5", 40000))
    unnamed: dict[str, Any] = {**scope, "client": ("192.0.2.7", 40000), "scheme": "http"}
    await addresses.resolve(unnamed)
    assert (unnamed["client"][0], unnamed["scheme"]) == ("192.0.2.7", "http")  # nobody named: ignored


async def test_a_named_proxy_naming_its_client_otherwise_is_not_taken_to_say_here() -> None:
    addresses = ClientAddresses(LOOPBACK)
    for header in (b"forwarded", b"x-real-ip"):  # read by nobody here: where the client is, unknown
        scope: dict[str, Any] = {"type": "http", "client": ("127.0.0.1", 40000), "headers": [(header, b"192.0.2.7")]}
        await addresses.resolve(scope)
        assert addresses.is_this_machine(scope) is False, header


@pytest.mark.parametrize("bad", ["*", "nginx", "10.0.0.5/8", "10.0.0.0/8,*"])
def test_trusted_proxies_must_be_named(settings: Settings, bad: str) -> None:
    with pytest.raises(ValueError, match="TOKENTAIL_TRUSTED_PROXIES"):
        Settings.model_validate({**settings.model_dump(), "trusted_proxies": bad})


def test_keys_say_who_and_which_tenants(settings: Settings) -> None:
    secured = settings.model_copy(
        update={
            "api_keys": SecretStr(f"acme:{KEY_A},beta:{KEY_B}"),
            "secret": SecretStr(SECRET),
            "admin_keys": SecretStr(f"ops:{ADMIN_KEY}"),
            "admin_tenants": ["beta"],
        }
    )
    auth = AdminAuth(secured)
    assert auth.admin_of(ADMIN_KEY, False) == auth.admin_of(ADMIN_KEY, True)
    assert (auth.admin_of(ADMIN_KEY, False).who, auth.admin_of(ADMIN_KEY, False).tenant) == ("ops", None)
    acme = auth.admin_of(KEY_A, True)  # loopback opens nothing once auth is on
    assert (acme.who, acme.tenant) == ("tenant:acme", "acme")
    assert auth.admin_of(KEY_B, False).tenant is None  # an admin tenant's key sees every tenant
    token, _ = StreamTokens(SECRET, 60).issue("s_mine", "acme", "chat")
    with pytest.raises(Forbidden, match="stream token"):
        auth.admin_of(token, False)
    for wrong in (None, "", "nope-0123456789abcdef"):
        with pytest.raises(Unauthorized):
            auth.admin_of(wrong, True)


def test_admin_keys_alone_turn_the_console_s_auth_on(settings: Settings) -> None:
    auth = AdminAuth(settings.model_copy(update={"admin_keys": SecretStr(f"ops:{ADMIN_KEY}")}))
    with pytest.raises(Unauthorized):
        auth.admin_of(None, True)
    assert auth.admin_of(ADMIN_KEY, False).who == "ops"


@pytest.mark.parametrize("bad", ["ops", f"ops:{ADMIN_KEY},ops2:{ADMIN_KEY}", "ops:short", "bad name:" + ADMIN_KEY])
def test_bad_admin_keys_are_refused_at_start(settings: Settings, bad: str) -> None:
    with pytest.raises(ValueError, match="TOKENTAIL_ADMIN_KEYS") as refused:
        Settings.model_validate({**settings.model_dump(), "admin_keys": bad})
    assert ADMIN_KEY not in str(refused.value)


async def _pages(index: RunIndex, tenant: str | None, limit: int, **where: Any) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = await index.newest(tenant, cursor, _keep_all, limit, **where)
        pages.append([run.run_id for run in page.runs])
        if (cursor := page.next_cursor) is None:
            return pages


async def _keep_all(batch: list[IndexedRun]) -> list[bool]:
    return [True] * len(batch)


async def test_pages_go_through_runs_of_equal_times_once_each(
    redis: fakeredis.FakeAsyncRedis, settings: Settings
) -> None:
    index, keys = RunIndex(redis, settings), Keys(settings.key_prefix)
    # Ten runs queued in three instants (gateways' clocks meet): a cursor must not skip nor repeat any.
    for i, score in enumerate([1, 1, 1, 2, 2, 2, 2, 3, 3, 3]):
        await redis.zadd(keys.admin_runs, {f"s_{i} r_{i}": score})
    for limit in (1, 2, 3, 4, 10, 50):
        pages = await _pages(index, None, limit)
        runs = [run for page in pages for run in page]
        assert sorted(runs) == sorted(f"r_{i}" for i in range(10)), limit
        assert len(runs) == 10, limit
        assert all(0 < len(page) <= limit for page in pages), (limit, pages)
    newest = (await index.newest(None, None, _keep_all, 3)).runs
    assert {run.run_id for run in newest} == {"r_7", "r_8", "r_9"}
    assert [r for p in await _pages(index, None, 10, since=2e-6, until=2e-6) for r in p] == [
        "r_6",
        "r_5",
        "r_4",
        "r_3",
    ]


async def test_a_page_reads_a_bounded_slice_and_says_where_to_go_on(
    redis: fakeredis.FakeAsyncRedis, settings: Settings
) -> None:
    index, keys = RunIndex(redis, settings), Keys(settings.key_prefix)
    total = SCAN_BUDGET * 2 + 5
    await redis.zadd(keys.admin_runs, {f"s_{i} r_{i}": i for i in range(total)})
    read: list[int] = []

    async def only_the_oldest(batch: list[IndexedRun]) -> list[bool]:
        read.append(len(batch))
        return [run.run_id == "r_0" for run in batch]

    first = await index.newest(None, None, only_the_oldest, 10)
    assert first.runs == [] and first.next_cursor is not None and sum(read) == SCAN_BUDGET
    second = await index.newest(None, first.next_cursor, only_the_oldest, 10)
    third = await index.newest(None, second.next_cursor, only_the_oldest, 10)
    assert [run.run_id for run in third.runs] == ["r_0"] and third.next_cursor is None
    assert sum(read) == total


async def test_the_index_keeps_the_newest_and_finds_a_run_s_session(
    redis: fakeredis.FakeAsyncRedis, settings: Settings
) -> None:
    index = RunIndex(redis, settings.model_copy(update={"admin_index_runs": 1_000}))
    for i in range(1_003):
        await index.add("acme", f"s_{i}", f"r_{i}")
    await index.add("acme", "s_1002", "r_1002")  # sent again: listed once
    keys = Keys(settings.key_prefix)
    assert await redis.zcard(keys.admin_runs) == 1_000 == await redis.zcard(keys.tenant_admin_runs("acme"))
    assert await redis.zscore(keys.admin_runs, "s_0 r_0") is None  # the oldest went
    assert await index.session_of("r_5") == "s_5"
    assert await index.session_of("r_unknown") is None


def _beat(worker: str, samples: list[Sample]) -> WorkerBeat:
    return WorkerBeat(
        worker=worker, host="h", pid=1, version="0", started_at=0, heartbeat_at=samples[-1].at, slots=4, samples=samples
    )


def test_throughput_sums_the_workers_growth_per_step() -> None:
    now = 1_000 * STEP_SECONDS + 1
    step = 999 * STEP_SECONDS  # the last whole step before `now`
    one = _beat("a", [Sample(step - 1, 100, 1, 0.5), Sample(step + 1, 150, 3, 1.5)])  # 50 tokens, 2 firsts, 1 s
    two = _beat("b", [Sample(step - 2, 0, 0, 0), Sample(step + 2, 25, 1, 0.25)])  # 25 tokens, 1 first, 0.25 s
    restarted = _beat("c", [Sample(step, 500, 5, 5), Sample(step + 3, 10, 0, 0)])  # counters went back: skipped
    points = throughput([one, two, restarted], 1, now)
    assert len(points) == 60 // STEP_SECONDS
    last = points[-1]
    assert last.at == step
    assert last.tokens_per_second == 75 / STEP_SECONDS
    assert last.first_token_ms == pytest.approx(1250 / 3)
    assert all(point.tokens_per_second == 0 and point.first_token_ms is None for point in points[:-1])


async def test_the_registry_forgets_workers_silent_for_long(
    redis: fakeredis.FakeAsyncRedis, settings: Settings
) -> None:
    registry = WorkerRegistry(redis, Keys(settings.key_prefix))
    await registry.beat(_beat("old", [Sample(0, 0, 0, 0)]))
    await registry.beat(_beat("new", [Sample(10_000, 5, 0, 0)]))
    await redis.hset(Keys(settings.key_prefix).workers, "broken", "{not json")  # type: ignore[misc]
    beats = await registry.read(now=10_005)
    assert [beat.worker for beat in beats] == ["new"] and beats[0].samples == [Sample(10_000, 5, 0, 0)]
    assert beats[0].alive(10_005) and not beats[0].alive(10_011)
    assert await redis.hkeys(Keys(settings.key_prefix).workers) == [b"new"]  # type: ignore[misc]


def test_stages_of_a_run_taken_over_asking_and_calling_a_tool() -> None:
    run = RunRecord(
        run_id="r_1",
        input="go",
        queued_at=1.0,
        workers=["w1", "w2", "w2"],
        attempt=2,
        resumes=1,
        answered_by={"i1": {"who": "admin:ops", "gateway": "g1"}},
    )
    stages = Stages(run)
    events: list[tuple[int, str, dict[str, Any], float]] = [
        (1, "run.queued", {"run_id": "r_1", "input": "go"}, 1.0),
        (2, "run.started", {"run_id": "r_1", "attempt": 1}, 1.5),
        (3, "message.delta", {"run_id": "r_1", "text": "ab"}, 1.6),
        (4, "message.delta", {"run_id": "r_1", "text": "cde"}, 1.7),
        (5, "tool.started", {"run_id": "r_1", "call_id": "c1", "name": "calc", "arguments": {}}, 1.8),
        (6, "tool.completed", {"run_id": "r_1", "call_id": "c1", "result": 2, "duration_ms": 40}, 1.84),
        (7, "message.delta", {"run_id": "r_1", "text": "f"}, 1.9),
        (8, "run.continued", {"run_id": "r_1", "attempt": 2, "from_event_id": 6}, 3.0),
        (9, "input.required", {"run_id": "r_1", "input_id": "i1", "kind": "text", "prompt": "?", "schema": {}}, 3.1),
        (10, "input.received", {"run_id": "r_1", "input_id": "i1", "answer": "x"}, 4.0),
        (11, "run.started", {"run_id": "r_1", "attempt": 2, "reason": "resume"}, 4.1),
        (12, "run.completed", {"run_id": "r_1", "output": "", "usage": {"output_tokens": 3}}, 4.5),
    ]
    for event in events:
        stages.add(*event)
    got = [(stage.kind, stage.model_extra) for stage in stages.finish()]
    assert got == [
        ("queued", {"event_id": 1, "place": None, "wait_ms": 500}),  # from its event to its first start's
        ("started", {"attempt": 1, "reason": "start", "worker": "w1", "until": 1.9}),  # its worker's last sign
        ("text", {"event_id": 3, "chars": 5, "until": 1.7}),
        ("tool", {"call_id": "c1", "name": "calc", "status": "completed", "duration_ms": 40}),
        ("text", {"event_id": 7, "chars": 1, "until": 1.9}),
        ("lost", {"attempt": 1, "worker": "w1", "taken_over_at": 3.0}),
        ("started", {"attempt": 2, "reason": "takeover", "worker": "w2", "until": 3.1}),  # it gave the run up to ask
        ("continued", {"attempt": 2, "from_event_id": 6}),
        ("question", {"input_id": "i1", "input_kind": "text", "prompt": "?"}),
        ("answered", {"input_id": "i1", "by": "admin:ops", "gateway": "g1"}),
        ("started", {"attempt": 2, "reason": "resume", "worker": "w2", "until": 4.5}),
        ("usage", {"usage": {"output_tokens": 3}}),
        ("ended", {"status": "completed", "error": None, "reason": None}),
    ]


def test_a_child_is_a_span_to_its_end_and_a_run_held_now_has_no_end_yet() -> None:
    child = RunRecord(run_id="r_2", input="look", status="completed", finished_at=2.5)
    run = RunRecord(run_id="r_1", input="go", status="running", workers=["w1"])
    stages = Stages(run, [run, child])
    spawn = {"run_id": "r_2", "parent_run_id": "r_1", "agent": "a", "name": "n", "input": "look", "cause": "spawn"}
    events: list[tuple[int, str, dict[str, Any], float]] = [
        (1, "run.started", {"run_id": "r_1", "attempt": 1}, 1.0),
        (2, "run.spawned", spawn, 1.5),
        (3, "message.delta", {"run_id": "r_1", "text": "x"}, 3.0),
    ]
    for event in events:
        stages.add(*event)
    got = {stage.kind: stage.model_extra or {} for stage in stages.finish()}
    assert got["spawned"]["until"] == 2.5
    assert got["started"]["until"] is None  # held now: to the present moment


async def test_console_streams_are_bounded_per_scope() -> None:
    async def overview(admin: Admin) -> bytes:
        return b"{}"

    async def newest(admin: Admin) -> object:
        return None

    live = LiveStreams(Snapshots(overview, newest))
    acme, ops = Admin("tenant:acme", "acme"), Admin("ops", None)
    opened = [live.stream(acme, None) for _ in range(MAX_STREAMS)]
    for stream in opened:
        assert await anext(stream) == b"retry: 1000\n\n"
    with pytest.raises(RateLimited):
        live.stream(acme, None)
    other = live.stream(ops, None)  # another scope is not held up by acme's
    assert await anext(other) == b"retry: 1000\n\n"
    for stream in [*opened, other]:
        await stream.aclose()
    assert live.open == {"acme": 0, None: 0}
    live.stream(acme, None)  # room again
