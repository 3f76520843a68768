"""Fair admission (shared/features/admission.py): caps on a tenant's and an end user's runs running at once, each
tenant its own line taken in turn, the line's bound; and what is never refused or delayed by them."""

import asyncio
from collections.abc import Callable
from typing import Any

import httpx2
import openai
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from tests.clients.sse_client import read_events
from tests.integration.test_auth import KEY_A, KEY_B, SECRET, bearer
from tests.support.gates import Gates
from tests.support.waiting import eventually, scaled
from tokentail.shared.features.admission import AUDIT_AFTER_SECONDS, Admission, SlotAudit
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys

AUTH = {"api_keys": SecretStr(f"acme:{KEY_A},beta:{KEY_B}"), "secret": SecretStr(SECRET), "runs_per_minute": 0}
AGENTS = {"agents": {"held": "tests.support.gates:held", "approval": "tests.agents.asking_agent:approval"}}
HELD = {"input": "hi", "agent": "held", "params": {"tokens": 4}}
FOLLOW_UP = {"input": "and then?", "params": {"tokens": 4}, "multitask": "enqueue"}  # the session's agent


async def _stack(start_gateway: Callable[..., Any], start_worker: Callable[..., Any], **settings: Any) -> Any:
    """A gateway and a worker (of 4 slots unless `settings` say otherwise), both with `settings`."""
    gateway = await start_gateway(**settings, **AUTH, **AGENTS)
    await start_worker(**{"worker_concurrency": 4, **settings}, **AGENTS)
    return gateway


async def _status(http: httpx2.AsyncClient, key: str, session_id: str) -> str:
    status: str = (await http.get(f"/v1/sessions/{session_id}", headers=bearer(key))).json()["status"]
    return status


async def _post(http: httpx2.AsyncClient, key: str, **body: Any) -> dict[str, Any]:
    response = await http.post("/v1/sessions", json={**HELD, **body}, headers=bearer(key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _reached(gates: Gates, run_id: str) -> None:
    await eventually(lambda: gates.reached(run_id), what=f"run {run_id} at its gate")


async def _completed(http: httpx2.AsyncClient, key: str, session_id: str) -> None:
    async def done() -> None:
        assert await _status(http, key, session_id) == "idle"

    await eventually(done, what=f"session {session_id} done")


async def test_a_run_beyond_its_tenant_s_cap_waits_and_starts_when_one_of_the_tenant_s_ends(
    start_gateway: Callable[..., Any], start_worker: Callable[..., Any], gates: Gates
) -> None:
    gateway = await _stack(start_gateway, start_worker, max_active_runs_per_tenant=1)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10, headers=bearer(KEY_A)) as http:
        first, second = [await _post(http, KEY_A) for _ in range(2)]
        other = await _post(http, KEY_B)
        await _reached(gates, first["run_id"])
        await _reached(gates, other["run_id"])  # another tenant's run is not held back by acme's cap
        assert await _status(http, KEY_A, second["session_id"]) == "queued"
        assert gates.reached(second["run_id"]) == []
        # Its session says why it waits, and where: next in acme's line, held by acme's cap.
        state = (await http.get(f"/v1/sessions/{second['session_id']}")).json()
        assert state["line"] == {"place": 1, "waiting_for": "tenant_cap"}
        third = await _post(http, KEY_A)
        state = (await http.get(f"/v1/sessions/{third['session_id']}")).json()
        assert state["line"] == {"place": 2, "waiting_for": "tenant_cap"}
        assert (await http.get(f"/v1/sessions/{first['session_id']}")).json()["line"] is None  # it runs
        # Its client sees it queued, then started once acme's first run ends.
        gates.release(first["run_id"])
        await _reached(gates, second["run_id"])
        gates.release(second["run_id"])
        gates.release(other["run_id"])
        gates.release_all()
        received = await read_events(http, second["events_url"])
        kinds = [kind for _, kind, _ in received.events]
        assert kinds[:2] == ["run.queued", "run.started"] and kinds[-1] == "run.completed"


async def test_a_run_beyond_its_user_s_cap_waits_while_the_tenant_s_other_users_run(
    start_gateway: Callable[..., Any], start_worker: Callable[..., Any], gates: Gates
) -> None:
    gateway = await _stack(start_gateway, start_worker, max_active_runs_per_user=1)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10, headers=bearer(KEY_A)) as http:
        ann_first = await _post(http, KEY_A, user="ann")
        await _reached(gates, ann_first["run_id"])
        # A follow-up in a session made for ann counts as hers, as does one naming her.
        session_of_ann = await _post(http, KEY_A, input=None, user="ann")
        follow_up = await http.post(f"/v1/sessions/{session_of_ann['session_id']}/runs", json=FOLLOW_UP)
        ann_second = await _post(http, KEY_A, user="ann")
        bob = await _post(http, KEY_A, user="bob")
        await _reached(gates, bob["run_id"])  # behind ann's waiting runs in acme's line, yet not held by them
        for waiting in (follow_up.json()["run_id"], ann_second["run_id"]):
            assert gates.reached(waiting) == []
        state = (await http.get(f"/v1/sessions/{ann_second['session_id']}")).json()
        assert state["line"]["waiting_for"] == "user_cap"
        gates.release(ann_first["run_id"])
        await eventually(lambda: gates.reached(follow_up.json()["run_id"]) or gates.reached(ann_second["run_id"]))
        assert not (gates.reached(follow_up.json()["run_id"]) and gates.reached(ann_second["run_id"]))
        gates.release_all()
        for session_id in (session_of_ann["session_id"], ann_second["session_id"], bob["session_id"]):
            await _completed(http, KEY_A, session_id)


async def test_a_tenant_s_backlog_delays_another_tenant_s_run_by_about_one_turn(
    start_gateway: Callable[..., Any], start_worker: Callable[..., Any], gates: Gates
) -> None:
    gateway = await _stack(start_gateway, start_worker, worker_concurrency=2)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10, headers=bearer(KEY_A)) as http:
        backlog = [await _post(http, KEY_A) for _ in range(30)]
        await eventually(lambda: sum(bool(gates.reached(run["run_id"])) for run in backlog) == 2)
        newcomer = await _post(http, KEY_B)
        # Each run that ends frees a slot: the next turn is beta's, whose pass is the lowest.
        for run in backlog:
            if gates.reached(newcomer["run_id"]):
                break
            if gates.reached(run["run_id"]):
                gates.release(run["run_id"])
                await eventually(lambda: gates.reached(newcomer["run_id"]) or _started(gates, backlog) > 2)
        started_before = _started(gates, backlog)
        assert gates.reached(newcomer["run_id"])
        assert started_before <= 3, f"{started_before} of acme's runs started before beta's"


def _started(gates: Gates, runs: list[dict[str, Any]]) -> int:
    return sum(bool(gates.reached(run["run_id"])) for run in runs)


@pytest.mark.responses
async def test_a_full_line_answers_429_and_creates_nothing_while_reads_steers_and_cancels_are_served(
    start_gateway: Callable[..., Any], start_worker: Callable[..., Any], gates: Gates, redis: Redis, settings: Settings
) -> None:
    caps = {"max_active_runs_per_tenant": 1, "max_queued_runs_per_tenant": 1}
    gateway = await _stack(start_gateway, start_worker, **caps)
    keys = Keys(settings.key_prefix)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10, headers=bearer(KEY_A)) as http:
        running = await _post(http, KEY_A)
        await _reached(gates, running["run_id"])
        waiting = await _post(http, KEY_A)
        sessions_before = len(await redis.keys(f"{settings.key_prefix}:*:meta"))
        refused = await http.post("/v1/sessions", json=HELD, headers=bearer(KEY_A))
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "queued_run_limit"
        assert int(refused.headers["Retry-After"]) >= 1
        refused = await http.post(f"/v1/sessions/{running['session_id']}/runs", json=FOLLOW_UP)
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "queued_run_limit"
        # The OpenAI SDK is told so as it tells a rate limit; its retry would find room once runs start.
        sdk = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=KEY_A, max_retries=0)
        with pytest.raises(openai.RateLimitError) as raised:
            await sdk.responses.create(model="held", input="hi")
        assert raised.value.code == "queued_run_limit" or "queued_run_limit" in str(raised.value)
        await sdk.close()
        assert len(await redis.keys(f"{settings.key_prefix}:*:meta")) == sessions_before  # nothing created
        assert await redis.zcard(keys.tenant_line("acme")) == 1
        # Never refused: reads, a stream's resume, a steer, another tenant's run.
        assert await _status(http, KEY_A, waiting["session_id"]) == "queued"
        resumed = await read_events(http, waiting["events_url"], limit=1)
        assert [kind for _, kind, _ in resumed.events] == ["run.queued"]
        steer = {"input": "and shorter", "multitask": "steer"}
        steered = await http.post(f"/v1/sessions/{running['session_id']}/runs", json=steer, headers=bearer(KEY_A))
        assert steered.status_code == 202, steered.text
        assert (await http.post("/v1/sessions", json=HELD, headers=bearer(KEY_B))).status_code == 201
        # A fork queues no run: not refused. A steer on a session with no run active queues one: refused.
        idle = (await http.post("/v1/sessions", json={"agent": "held"})).json()
        forked = await http.post(f"/v1/sessions/{idle['session_id']}/fork", params={"after": 0})
        assert forked.status_code == 201, forked.text
        refused = await http.post(f"/v1/sessions/{idle['session_id']}/runs", json=steer)
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "queued_run_limit"
        # A cancelled waiting run frees its place at once; so does a deleted session's.
        cancelled = await http.post(f"/v1/sessions/{waiting['session_id']}/cancel", headers=bearer(KEY_A))
        assert cancelled.json()["status"] == "cancelled"
        assert await redis.zcard(keys.tenant_line("acme")) == 0
        deleted = await _post(http, KEY_A)
        assert await redis.zcard(keys.tenant_line("acme")) == 1
        assert (await http.delete(f"/v1/sessions/{deleted['session_id']}")).status_code == 204
        assert await redis.zcard(keys.tenant_line("acme")) == 0
        assert not await redis.exists(keys.arq_job(deleted["run_id"]))
        assert (await http.post("/v1/sessions", json=HELD, headers=bearer(KEY_A))).status_code == 201
        gates.release_all()


async def _asked(http: httpx2.AsyncClient, key: str, session_id: str) -> str:
    """The input id of the question the session's run waits for, once it waits."""

    async def waiting() -> str:
        state = (await http.get(f"/v1/sessions/{session_id}", headers=bearer(key))).json()
        assert state["status"] == "waiting_for_input"
        input_id: str = state["pending_input"]["input_id"]
        return input_id

    return await eventually(waiting)


async def _answer(http: httpx2.AsyncClient, key: str, asking: dict[str, Any], input_id: str) -> None:
    url = f"/v1/sessions/{asking['session_id']}/runs/{asking['run_id']}/input"
    answered = await http.post(url, json={"input_id": input_id, "answer": {"approved": True}}, headers=bearer(key))
    assert answered.status_code == 202, answered.text


async def test_an_answered_run_earns_a_slot_again_at_the_head_of_its_tenant_s_line(
    start_gateway: Callable[..., Any], start_worker: Callable[..., Any], gates: Gates
) -> None:
    gateway = await _stack(start_gateway, start_worker, max_active_runs_per_tenant=1)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10, headers=bearer(KEY_A)) as http:
        asking = await _post(http, KEY_A, agent="approval")
        input_id = await _asked(http, KEY_A, asking["session_id"])
        # Waiting for its answer, it holds no slot: acme's next run starts, and holds the only one;
        # a third waits in acme's line.
        other = await _post(http, KEY_A)
        await _reached(gates, other["run_id"])
        later = await _post(http, KEY_A)
        await _answer(http, KEY_A, asking, input_id)
        # The answer queues the run in acme's line, under acme's cap: a worker that has since claimed
        # another tenant's run (a claim takes every job due first) has not started it.
        beta = await _post(http, KEY_B)
        await _reached(gates, beta["run_id"])
        assert await _status(http, KEY_A, asking["session_id"]) == "queued"
        # acme's slot given back, the answered run goes first: it was queued before `later`, which
        # stays in line (its gate unreached) until the answered run has ended.
        gates.release(other["run_id"])
        await _completed(http, KEY_A, asking["session_id"])
        await _reached(gates, later["run_id"])
        gates.release_all()


async def test_answers_do_not_delay_another_tenant_s_run_beyond_one_turn(
    start_gateway: Callable[..., Any], start_worker: Callable[..., Any], gates: Gates
) -> None:
    # One slot: acme's answered runs and beta's new run take turns for it.
    gateway = await _stack(start_gateway, start_worker, worker_concurrency=1)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10, headers=bearer(KEY_A)) as http:
        asking = [await _post(http, KEY_A, agent="approval") for _ in range(4)]
        questions = [await _asked(http, KEY_A, run["session_id"]) for run in asking]
        holder = await _post(http, KEY_A)
        await _reached(gates, holder["run_id"])
        for run, input_id in zip(asking, questions, strict=True):
            await _answer(http, KEY_A, run, input_id)
        newcomer = await _post(http, KEY_B)
        gates.release(holder["run_id"])
        await _reached(gates, newcomer["run_id"])  # it holds the one slot at its gate: nothing else runs
        done = [await _status(http, KEY_A, run["session_id"]) == "idle" for run in asking]
        assert sum(done) <= 1, f"{sum(done)} of acme's answered runs ran before beta's new one"
        gates.release_all()
        for run in asking:
            await _completed(http, KEY_A, run["session_id"])


async def test_the_audit_gives_back_a_slot_whose_run_no_longer_runs(
    redis: Redis, settings: Settings, start_gateway: Callable[..., Any], start_worker: Callable[..., Any], gates: Gates
) -> None:
    keys = Keys(settings.key_prefix)
    gateway = await _stack(start_gateway, start_worker, max_active_runs_per_tenant=1)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10, headers=bearer(KEY_A)) as http:
        # A slot left by a worker that died holding a run since deleted: nothing would give it back.
        await redis.hset(keys.tenant_running("acme"), "s_gone r_gone", "r_gone ")  # type: ignore[misc]
        await redis.sadd(keys.admission_tenants, "acme")  # type: ignore[misc]
        waiting = await _post(http, KEY_A)
        audit = SlotAudit(redis, redis, Admission(keys, tenant_cap=1), interval=1)
        assert await audit.audit(now=0) == 0  # seen now: too young to judge
        assert gates.reached(waiting["run_id"]) == []
        assert await audit.audit(now=AUDIT_AFTER_SECONDS) == 1
        await _reached(gates, waiting["run_id"])  # the tenant takes turns again, and its next run starts
        assert await audit.audit(now=2 * AUDIT_AFTER_SECONDS) == 0  # a running run's slot is kept
        gates.release_all()
        await _completed(http, KEY_A, waiting["session_id"])
    await eventually(lambda: _no_slots(redis, keys), within=scaled(10))


async def _no_slots(redis: Redis, keys: Keys) -> None:
    assert await redis.hlen(keys.tenant_running("acme")) == 0  # type: ignore[misc]


@pytest.mark.responses
async def test_a_responses_api_request_counts_against_the_user_its_safety_identifier_names(
    start_gateway: Callable[..., Any], start_worker: Callable[..., Any], gates: Gates
) -> None:
    gateway = await _stack(start_gateway, start_worker, max_active_runs_per_user=1)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10, headers=bearer(KEY_A)) as http:
        running = await _post(http, KEY_A, user="ann")
        await _reached(gates, running["run_id"])
        sdk = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=KEY_A)
        anns = [
            await sdk.responses.create(model="held", input="hi", background=True, **named)  # type: ignore[call-overload]
            for named in ({"safety_identifier": "ann"}, {"user": "ann"})  # OpenAI's name, then its older one
        ]
        other = await sdk.responses.create(model="held", input="hi", background=True, safety_identifier="bo")
        await eventually(lambda: _in_progress(sdk, other.id), what="another user's response started")
        # Queued after ann's, bo's started; ann's wait behind her running run.
        assert [(await sdk.responses.retrieve(ann.id)).status for ann in anns] == ["queued", "queued"]
        gates.release_all()
        await sdk.close()


async def _in_progress(sdk: openai.AsyncOpenAI, response_id: str) -> None:
    assert (await sdk.responses.retrieve(response_id)).status in ("in_progress", "completed")


async def test_a_tenant_parked_at_its_cap_with_no_slot_left_takes_turns_again(
    redis: Redis, settings: Settings, start_gateway: Callable[..., Any], start_worker: Callable[..., Any], gates: Gates
) -> None:
    keys = Keys(settings.key_prefix)
    gateway = await _stack(start_gateway, start_worker, max_active_runs_per_tenant=1)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10, headers=bearer(KEY_A)) as http:
        running = await _post(http, KEY_A)
        await _reached(gates, running["run_id"])
        waiting = await _post(http, KEY_A)
        await eventually(lambda: redis.zscore(keys.admission_parked, "acme"), what="acme parked at its cap")
        audit = SlotAudit(redis, redis, Admission(keys, tenant_cap=1), interval=1)
        await audit.audit(now=0)  # at its cap: it stays parked
        assert await redis.zscore(keys.admission_parked, "acme") is not None and not gates.reached(waiting["run_id"])
        # A failover lost what held the slot, and what would give it back: nothing would unpark acme.
        await redis.delete(keys.tenant_running("acme"))
        await audit.audit(now=0)
        await _reached(gates, waiting["run_id"])
        gates.release_all()


async def test_requests_at_once_fill_a_line_exactly_to_its_bound_and_list_only_what_they_queued(
    start_gateway: Callable[..., Any], redis: Redis, settings: Settings
) -> None:
    # With the queue on the sessions' Redis, the script that queues a run checks its tenant's line in the
    # same step (shared/store/lua/queue_run.lua): requests in flight together cannot each pass a bound read
    # before, and one refused makes nothing, not even the console's index entry it would have had.
    gateway = await start_gateway(max_queued_runs_per_tenant=3)  # no worker: every run waits in line
    keys = Keys(settings.key_prefix)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=scaled(10)) as http:
        body = {"input": "hi", "model": "scripted"}
        answers = await asyncio.gather(*(http.post("/v1/sessions", json=body) for _ in range(12)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201] * 3 + [429] * 9, statuses
    assert {answer.json()["error"]["type"] for answer in answers if answer.status_code == 429} == {"queued_run_limit"}
    queued = {answer.json()["run_id"] for answer in answers if answer.status_code == 201}
    assert await redis.zcard(keys.tenant_line("public")) == 3
    listed = {member.decode().split()[1] for member in await redis.zrange(keys.tenant_admin_runs("public"), 0, -1)}
    assert listed == queued
