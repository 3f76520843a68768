"""Fair admission with real processes (shared/features/admission.py): tenants' lines taken in turn, and caps on the
runs of a tenant and of an end user held across gateways and workers, through a worker killed -9 and on a
Redis Cluster. Runs wait at their gates (tests/support/gates.py): one that reached its gate and was not released
is running, so what runs at once is read from the gates, at every step, as the test lets runs go."""

import os
import signal
import threading
from functools import partial
from typing import Any

import httpx2
from redis import Redis

from tests.e2e.conftest import Stack
from tests.support.waiting import eventually_sync
from tokentail.shared.store.keys import Keys

KEY_A, KEY_B = "acme-key-0123456789abcdef", "beta-key-0123456789abcdef"
ENV = {
    "TOKENTAIL_API_KEYS": f"acme:{KEY_A},beta:{KEY_B}",
    "TOKENTAIL_SECRET": "s" * 40,
    "TOKENTAIL_AGENTS": '{"held": "tests.support.gates:held"}',
    "TOKENTAIL_RUNS_PER_MINUTE": "0",
}
HELD = {"input": "hi", "agent": "held", "params": {"tokens": 4}}
_KEYS = {"acme": KEY_A, "beta": KEY_B}
_TENANTS = {key: tenant for tenant, key in _KEYS.items()}


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _queue(url: str, key: str, count: int, **body: Any) -> list[dict[str, Any]]:
    """`count` runs queued at once (from 8 threads), each in a session of its own."""
    created: list[dict[str, Any]] = []
    lock = threading.Lock()

    def post(n: int) -> None:
        with httpx2.Client(base_url=url, timeout=30, headers=_headers(key)) as http:
            for _ in range(n):
                response = http.post("/v1/sessions", json={**HELD, **body})
                assert response.status_code == 201, response.text
                with lock:
                    created.append(response.json() | {"tenant": _TENANTS[key]})

    threads = [threading.Thread(target=post, args=(count // 8 + (i < count % 8),)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(created) == count
    return created


def test_a_backlog_of_120_delays_another_tenant_s_run_by_about_one_turn(stack: Stack) -> None:
    # Two workers of two slots: four of acme's runs hold them. Beta's run then waits for one slot to
    # free: its tenant's turn comes first (its pass is the lowest), so it starts before at most the
    # four running plus one per worker whose poll was taking acme's next run as beta's was queued.
    stack.env |= {**ENV, "TOKENTAIL_WORKER_CONCURRENCY": "2"}
    for _ in range(2):
        stack.worker()
    stack.wait_for_workers(2)
    url = stack.gateway()
    backlog = _queue(url, KEY_A, 120)

    def started() -> list[dict[str, Any]]:
        return [run for run in backlog if stack.gates.reached(run["run_id"])]

    eventually_sync(lambda: len(started()) == 4, within=30, what="acme's first four runs started")
    (newcomer,) = _queue(url, KEY_B, 1)
    released: set[str] = set()

    def one_more_started(before: int) -> bool:
        return bool(stack.gates.reached(newcomer["run_id"])) or len(started()) > before

    # Acme's runs end one at a time, each freeing one slot, and the next run to start is waited for
    # before the next ends: until beta's starts.
    while not stack.gates.reached(newcomer["run_id"]):
        running = [run["run_id"] for run in started() if run["run_id"] not in released]
        before = len(started())
        stack.gates.release(running[0])
        released.add(running[0])
        eventually_sync(partial(one_more_started, before), within=30, what="the next run started")
    started_before = len(started())
    print(f"\nfairness: {started_before} of acme's 120 queued runs started before beta's one")  # noqa: T201
    assert started_before <= 6


def test_caps_hold_across_two_gateways_and_two_workers_and_a_worker_killed_leaks_no_slot(stack: Stack) -> None:
    caps = {"TOKENTAIL_MAX_ACTIVE_RUNS_PER_TENANT": "3", "TOKENTAIL_MAX_ACTIVE_RUNS_PER_USER": "1"}
    stack.env |= {**ENV, **caps, "TOKENTAIL_WORKER_CONCURRENCY": "4", "TOKENTAIL_LEASE_MS": "2000"}
    workers = [stack.worker() for _ in range(2)]
    stack.wait_for_workers(2)
    gateways = [stack.gateway(), stack.gateway()]
    # acme: 4 users x 3 runs (a user's cap of 1 and acme's of 3 both bind); beta: 6 runs, no user.
    runs = [
        run | {"user": user}
        for i, user in enumerate(["ann", "bob", "cy", "di"] * 3)
        for run in _queue(gateways[i % 2], KEY_A, 1, user=user)
    ]
    runs += _queue(gateways[1], KEY_B, 6)

    def kill_a_worker(released: int) -> None:
        # After 4 runs went through, a worker dies holding runs at their gates: they are taken over once
        # their leases lapse, holding their slots meanwhile, which no other run takes.
        if released == 4:
            os.kill(workers[0].pid, signal.SIGKILL)

    def both_at_their_caps() -> None:  # 8 slots: before any run is let go, each tenant reaches its cap
        tenants = [run["tenant"] for run in _running(stack, runs, set())]
        assert (tenants.count("acme"), tenants.count("beta")) == (3, 3), tenants

    eventually_sync(both_at_their_caps, within=60, what="both tenants at their caps")
    most = _let_go(stack, runs, kill_a_worker)
    print(f"\ncaps: most running at once {most} (acme 3, beta 3, one user 1)")  # noqa: T201
    assert most == {"acme": 3, "beta": 3, "user": 1}  # each cap reached, none passed
    with httpx2.Client(base_url=gateways[0], timeout=30) as http:

        def all_completed() -> None:
            for run in runs:
                state = http.get(f"/v1/sessions/{run['session_id']}", headers=_headers(_KEYS[run["tenant"]])).json()
                assert state["status"] == "idle" and state["runs"][-1]["status"] == "completed", state

        eventually_sync(all_completed, within=60, what="every run completed")
    keys = Keys(stack.env["TOKENTAIL_KEY_PREFIX"])
    with Redis.from_url(stack.env["TOKENTAIL_REDIS_URL"]) as redis:

        def no_slot_held() -> None:
            assert redis.hlen(keys.tenant_running("acme")) + redis.hlen(keys.tenant_running("beta")) == 0

        eventually_sync(no_slot_held, within=30, what="every slot given back")
        assert redis.zcard(keys.tenant_line("acme")) + redis.zcard(keys.tenant_line("beta")) == 0


def test_a_tenant_s_cap_holds_on_a_redis_cluster(cluster_stack: Stack) -> None:
    # The sessions on a Cluster of three primaries, the queue (and so the caps) on a Redis of its own.
    stack = cluster_stack
    stack.env |= {**ENV, "TOKENTAIL_MAX_ACTIVE_RUNS_PER_TENANT": "1", "TOKENTAIL_WORKER_CONCURRENCY": "4"}
    stack.worker()
    stack.wait_for_workers(1)
    runs = _queue(stack.gateway(), KEY_A, 3)
    assert _let_go(stack, runs) == {"acme": 1}


def _running(stack: Stack, runs: list[dict[str, Any]], released: set[str]) -> list[dict[str, Any]]:
    return [run for run in runs if stack.gates.reached(run["run_id"]) and run["run_id"] not in released]


def _let_go(stack: Stack, runs: list[dict[str, Any]], on_release: Any = None) -> dict[str, int]:
    """Release the runs one at a time as they start, until all went through; the most of each tenant's
    (`tenant` in each run) and of one user's (`user`, under "user") seen running at once, at every step."""
    most: dict[str, int] = {}
    released: set[str] = set()
    while len(released) < len(runs):
        eventually_sync(lambda: _running(stack, runs, released), within=60, what="a run started")
        running = _running(stack, runs, released)
        for key in {run["tenant"] for run in running}:
            most[key] = max(most.get(key, 0), sum(run["tenant"] == key for run in running))
        users = [run["user"] for run in running if run.get("user")]
        if users:
            most["user"] = max([most.get("user", 0), *(users.count(user) for user in users)])
        if on_release is not None:
            on_release(len(released))
        stack.gates.release(running[0]["run_id"])
        released.add(running[0]["run_id"])
    return most
