"""The operator console's reads at scale: the admin API (`/v1/admin/...`) and its live stream with
100,000 sessions and 1,000 runs active, against the same reads on a nearly empty Redis, in one run.

    .venv/bin/python bench/console.py --json console.json    # 100,000 sessions, 1,000 active (see docs/benchmarks.md)
    .venv/bin/python bench/console.py --quick                # 2,000 sessions, 100 active: a check of the script

Everything is made as production makes it: one private redis-server, `tokentail gateway` (auth on: an
API key per tenant, and an admin key, `TOKENTAIL_ADMIN_KEYS`, for the console's reads) and one
`tokentail worker` running the offline scripted model. Sessions are created by `POST /v1/sessions`
(tenants' keys, end users, inputs), so each run takes the gateway's queue path, and with it the admin
runs index, the tenants' lines and the worker's claim; the worker finishes each (the scripted model's
shortest answer at once; one in a hundred fails at its first token, so a status filter has something
rare to find). The runs held active are the same request with a slow pace (two tokens 2,000 s apart:
the first at once, so each is *running*, with a text stage, for the rest of the benchmark; the worker's
idle limit is raised past that).

Phases, on one Redis:

1. baseline: `--baseline-sessions` sessions (500; `--quick`: 200) and 1% of `--active` held; the
   gateway restarted (a fresh heap); then every read below;
2. at scale: sessions added up to `--sessions` (100,000; `--quick`: 2,000) and runs held up to
   `--active` (1,000; `--quick`: 100); the gateway restarted; the same reads.

Each read is timed from the request to the last byte of the response, `--repeats` times in turns
(30; `--quick`: 5), one at a time, by one admin client on loopback: `GET /v1/admin/overview`,
`/tenants`, `/runs` (the first page; `status=active`; `status=failed`, rare; one small tenant's; and
pages after the first, by `next_cursor`, `limit=50`), `/find?q=<run id>`, `/sessions/{sid}` (sessions
spread over the fill) and a run's `/timeline` (a finished run, and a running one). The live stream,
`/v1/admin/stream`, is read for a window (15 s; `--quick`: 3 s) while runs start at 5 a second (each
changes the overview): the first event's time, the gaps between `overview` events, their size, and the
gateway's CPU over the window. Last, what the admin index holds in Redis (`MEMORY USAGE` of its keys:
the runs' sorted sets and the run -> session strings), per session, beside Redis's whole
`used_memory` per session. Figures are printed, never asserted; ratios are at scale / baseline, from
the same run.
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import harness
import httpx2
import uvloop
from harness import Stack, percentile
from redis.asyncio import Redis

from tokentail.shared.store.keys import Keys

# Tenants and their shares of the sessions: one large (the "acme" an operator asks about), the rest
# alike; `small` is the one whose runs page is measured alone.
TENANTS = {"acme": 40, **{f"t{i:02d}": 6 for i in range(1, 11)}}
SMALL_TENANT = "t10"
USERS = 2_000  # end users, spread over the tenants
FAIL_EVERY = 100  # one run in this many fails (the scripted model's `fail_at_token: 0`)
ADMIN_KEY = "bench-admin-key-0123456789abcdef"
SECRET = "s" * 32
PAGE = 50  # the runs pages' `limit`
HOLD = {"tokens": 2, "tokens_per_second": 0.0005}  # the first token at once, the second 2,000 s later
TRICKLE_PER_SECOND = 5  # starts during the live stream's window


def tenant_key(tenant: str) -> str:
    return f"bench-key-{tenant}-0123456789"


class Filler:
    """Sessions created through the gateway, each a run the worker finishes or holds."""

    def __init__(self, stack: Stack, concurrency: int) -> None:
        self.stack = stack
        self.concurrency = concurrency
        self.rng = random.Random(74)
        self.created = 0
        self.finished: list[tuple[str, str]] = []  # a sample of (session, run): spread over the fill
        self.held: list[tuple[str, str]] = []
        self.failed: list[tuple[str, str]] = []
        self.filled: tuple[float, float] = (0.0, 0.0)  # when the last fill of finished sessions began and ended
        tickets = [tenant for tenant, share in TENANTS.items() for _ in range(share)]
        self._tenants = tickets

    def _body(self, number: int, held: bool) -> tuple[str, dict[str, Any]]:
        tenant = self.rng.choice(self._tenants)
        params: dict[str, Any] = dict(HOLD) if held else {"tokens": 1, "tokens_per_second": 0}
        if not held and number % FAIL_EVERY == FAIL_EVERY - 1:
            params["fail_at_token"] = 0
        body = {
            "input": f"question {number}: what happened to my order {self.rng.randrange(10**6)}?",
            "model": "scripted",
            "params": params,
            "user": f"user-{self.rng.randrange(USERS)}",
        }
        return tenant, body

    def client(self) -> httpx2.AsyncClient:
        limits = httpx2.Limits(max_connections=self.concurrency)
        return httpx2.AsyncClient(base_url=self.stack.url, timeout=120, limits=limits)

    async def post(self, client: httpx2.AsyncClient, held: bool = False) -> tuple[str, str, bool]:
        """One session, its run queued; (session, run, whether it is to fail)."""
        number = self.created
        self.created += 1
        tenant, body = self._body(number, held)
        headers = {"Authorization": f"Bearer {tenant_key(tenant)}"}
        response = await client.post("/v1/sessions", json=body, headers=headers)
        response.raise_for_status()
        created = response.json()
        return created["session_id"], created["run_id"], "fail_at_token" in body["params"]

    async def create(self, count: int, held: bool = False) -> float:
        """`count` sessions, `concurrency` requests at a time; seconds taken. A sample of the
        finished ones (40, spread over the count), and every failed and held one, is kept to read."""
        left = count
        sample_every = max(1, count // 40)
        began = time.perf_counter()
        async with self.client() as client:

            async def one_by_one() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    number = left
                    session_id, run_id, fails = await self.post(client, held)
                    if held:
                        self.held.append((session_id, run_id))
                    elif fails:
                        self.failed.append((session_id, run_id))
                    elif number % sample_every == 0:
                        self.finished.append((session_id, run_id))

            filling = time.time()
            await asyncio.gather(*(one_by_one() for _ in range(self.concurrency)))
            if not held:
                self.filled = (filling, time.time())
        return time.perf_counter() - began


async def admission(redis: Redis, keys: Keys) -> tuple[int, int]:
    """Runs waiting in the tenants' lines, and runs holding a slot (shared/features/admission.py's figures)."""
    tenants = [member.decode() for member in await redis.smembers(keys.admission_tenants)]  # type: ignore[misc]
    async with redis.pipeline(transaction=False) as pipe:
        for tenant in tenants:
            pipe.zcard(keys.tenant_line(tenant))
            pipe.hlen(keys.tenant_running(tenant))
        counts = await pipe.execute()
    return sum(counts[0::2]), sum(counts[1::2])


async def settle(stack: Stack, running: int, what: str) -> float:
    """Until no run waits in a line and exactly `running` hold a slot (the runs held); seconds waited."""
    redis, keys = Redis.from_url(stack.redis.url), Keys(stack.prefix)
    began = time.perf_counter()
    last_report = began
    try:
        while True:
            waiting, holding = await admission(redis, keys)
            queued = await redis.zcard(keys.queue)
            if waiting == 0 and holding == running and queued == 0:
                return time.perf_counter() - began
            if time.perf_counter() - last_report > 30:
                last_report = time.perf_counter()
                print(f"  ({what}: {waiting} waiting, {holding} running, {queued} in arq's queue)")
            await asyncio.sleep(0.2)
    finally:
        await redis.aclose()


def restart_gateway(stack: Stack) -> None:
    """A fresh gateway process on the same port and key prefix (the worker and its runs go on)."""
    harness.stop_process(stack.gateway)
    stack.gateway = stack._spawn(
        stack.gateway_tree or harness.ROOT, "gateway", "--host", "127.0.0.1", "--port", str(stack.port)
    )
    deadline = time.monotonic() + harness.patience(20)
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"{stack.url}/readyz", timeout=harness.patience(1)).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the gateway did not start")


class Reader:
    """One admin client, timing reads."""

    def __init__(self, stack: Stack) -> None:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        self.client = httpx2.AsyncClient(base_url=stack.url, headers=headers, timeout=60)

    async def get(self, path: str, params: dict[str, Any] | None = None) -> tuple[float, int, dict[str, Any]]:
        """ms to the last byte, bytes, and the JSON."""
        began = time.perf_counter()
        response = await self.client.get(path, params=params)
        elapsed = (time.perf_counter() - began) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} {params or ''}: {response.status_code} {response.text[:300]}")
        return elapsed, len(response.content), response.json()

    async def close(self) -> None:
        await self.client.aclose()


def figures_of(times: list[float], sizes: list[int], **extra: Any) -> dict[str, Any]:
    return {
        "p50_ms": statistics.median(times),
        "p99_ms": percentile(times, 99),
        "max_ms": max(times),
        "bytes": int(statistics.median(sizes)),
        "count": len(times),
        **extra,
    }


async def measure_reads(stack: Stack, filler: Filler, repeats: int) -> dict[str, dict[str, Any]]:
    """Every read of the console, `repeats` times, in turns (so that the box's drift counts for all)."""
    reader = Reader(stack)
    rng = random.Random(7)
    finished, held, failed = filler.finished, filler.held, filler.failed
    middle = sum(filler.filled) / 2  # a page from the middle of the index, as a search by time asks
    assert finished and held, "nothing to read: the fill made no sessions"
    reads: dict[str, Callable[[], Awaitable[tuple[float, int, dict[str, Any]]]]] = {
        "overview": lambda: reader.get("/v1/admin/overview"),
        "tenants": lambda: reader.get("/v1/admin/tenants"),
        "runs, first page": lambda: reader.get("/v1/admin/runs", {"limit": PAGE}),
        "runs, status=active": lambda: reader.get("/v1/admin/runs", {"status": "active", "limit": PAGE}),
        "runs, status=failed": lambda: reader.get("/v1/admin/runs", {"status": "failed", "limit": PAGE}),
        f"runs, tenant={SMALL_TENANT}": lambda: reader.get("/v1/admin/runs", {"tenant": SMALL_TENANT, "limit": PAGE}),
        "runs, until= the fill's middle": lambda: reader.get("/v1/admin/runs", {"until": middle, "limit": PAGE}),
        "find a run id": lambda: reader.get("/v1/admin/find", {"q": rng.choice(finished)[1]}),
        "session": lambda: reader.get(f"/v1/admin/sessions/{rng.choice(finished)[0]}"),
        "timeline, finished run": lambda: reader.get(
            "/v1/admin/sessions/{}/runs/{}/timeline".format(*rng.choice(finished))
        ),
        "timeline, running run": lambda: reader.get("/v1/admin/sessions/{}/runs/{}/timeline".format(*rng.choice(held))),
    }
    if failed:
        reads["timeline, failed run"] = lambda: reader.get(
            "/v1/admin/sessions/{}/runs/{}/timeline".format(*rng.choice(failed))
        )
    times: dict[str, list[float]] = {name: [] for name in reads}
    sizes: dict[str, list[int]] = {name: [] for name in reads}
    answers: dict[str, dict[str, Any]] = {}
    try:
        for name, read in reads.items():  # a first read of each, untimed (imports, caches)
            answers[name] = (await read())[2]
        for _ in range(repeats):
            for name, read in reads.items():
                elapsed, size, _ = await read()
                times[name].append(elapsed)
                sizes[name].append(size)
        figures = {name: figures_of(times[name], sizes[name]) for name in reads}
        figures["runs, first page"]["runs"] = len(answers["runs, first page"]["runs"])
        for name in ("runs, status=active", "runs, status=failed", f"runs, tenant={SMALL_TENANT}"):
            figures[name]["runs"] = len(answers[name]["runs"])
            figures[name]["scanned"] = answers[name].get("scanned")
        figures["runs, pages by cursor"] = await follow_cursor(reader, repeats)
    finally:
        await reader.close()
    return figures


async def follow_cursor(reader: Reader, pages: int) -> dict[str, Any]:
    """The pages after the first, by `next_cursor`, up to `pages` of them (fewer if the index ends)."""
    times: list[float] = []
    sizes: list[int] = []
    _, _, page = await reader.get("/v1/admin/runs", {"limit": PAGE})
    runs = len(page["runs"])
    while page.get("next_cursor") and len(times) < pages:
        elapsed, size, page = await reader.get("/v1/admin/runs", {"limit": PAGE, "cursor": page["next_cursor"]})
        times.append(elapsed)
        sizes.append(size)
        runs += len(page["runs"])
    if not times:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan"), "bytes": 0, "count": 0}
    return figures_of(times, sizes, runs=runs)


async def sse_events(response: httpx2.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) of each SSE frame of `response` (comments skipped)."""
    event, data = "message", []
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line == "" and data:
            yield event, "\n".join(data)
            event, data = "message", []


async def measure_stream(stack: Stack, filler: Filler, seconds: float) -> dict[str, Any]:
    """`/v1/admin/stream` read for `seconds` while runs start at TRICKLE_PER_SECOND: the overview
    events' cadence and size, and the gateway's CPU meanwhile."""
    arrivals: list[float] = []
    sizes: list[int] = []
    first_ms: float | None = None
    headers = {"Authorization": f"Bearer {ADMIN_KEY}", "Accept": "text/event-stream"}
    stop = asyncio.Event()

    async def read() -> None:
        nonlocal first_ms
        began = time.perf_counter()
        async with httpx2.AsyncClient(base_url=stack.url, timeout=None) as client:
            async with client.stream("GET", "/v1/admin/stream", headers=headers) as response:
                if response.status_code != 200:
                    raise RuntimeError(f"GET /v1/admin/stream: {response.status_code}")
                async for event, data in sse_events(response):
                    if event == "overview":
                        now = time.perf_counter()
                        first_ms = (now - began) * 1000 if first_ms is None else first_ms
                        arrivals.append(now)
                        sizes.append(len(data))
                    if stop.is_set():
                        return

    async def trickle() -> None:
        async with filler.client() as client:
            while not stop.is_set():
                await asyncio.sleep(1 / TRICKLE_PER_SECOND)
                await filler.post(client)

    gateway = stack.gateway
    assert gateway is not None
    reading = asyncio.create_task(read())
    await asyncio.sleep(harness.patience(1.0))  # the first snapshot, and the connection settled
    cpu_before, window_began = harness.cpu_seconds(gateway.pid), time.perf_counter()
    counted_from = len(arrivals)
    starting = asyncio.create_task(trickle())
    await asyncio.sleep(seconds)
    window = time.perf_counter() - window_began
    cpu = harness.cpu_seconds(gateway.pid) - cpu_before
    stop.set()
    await starting
    reading.cancel()
    try:
        await reading
    except asyncio.CancelledError:
        pass
    in_window = arrivals[counted_from:]
    gaps = [(b - a) * 1000 for a, b in zip(in_window, in_window[1:], strict=False)]
    return {
        "first_event_ms": first_ms,
        "events": len(in_window),
        "per_second": len(in_window) / window,
        "gap_p50_ms": statistics.median(gaps) if gaps else float("nan"),
        "gap_max_ms": max(gaps) if gaps else float("nan"),
        "event_bytes": int(statistics.median(sizes)) if sizes else 0,
        "gateway_cpu_share": cpu / window,
        "seconds": window,
    }


async def index_memory(stack: Stack, sessions: int) -> dict[str, Any]:
    """Bytes the admin index holds (MEMORY USAGE of every key of it), and Redis's whole used_memory,
    per session."""
    redis, keys = Redis.from_url(stack.redis.url), Keys(stack.prefix)
    try:
        sets = [keys.admin_runs, *(keys.tenant_admin_runs(tenant) for tenant in TENANTS)]
        set_bytes = sum([await redis.memory_usage(key, samples=0) or 0 for key in sets])
        members = await redis.zrange(keys.admin_runs, 0, -1)
        string_bytes = 0
        for start in range(0, len(members), 1000):
            async with redis.pipeline(transaction=False) as pipe:
                for member in members[start : start + 1000]:
                    pipe.memory_usage(keys.admin_run(member.decode().partition(" ")[2]), samples=0)
                string_bytes += sum(usage or 0 for usage in await pipe.execute())
        used = int((await redis.info("memory"))["used_memory"])
        listed = len(members)
    finally:
        await redis.aclose()
    return {
        "runs_listed": listed,
        "sorted_sets_bytes": set_bytes,
        "run_strings_bytes": string_bytes,
        "index_bytes_per_session": (set_bytes + string_bytes) / max(1, sessions),
        "used_memory_bytes_per_session": used / max(1, sessions),
    }


async def phase(
    stack: Stack, filler: Filler, sessions: int, active: int, repeats: int, window: float
) -> dict[str, Any]:
    """Fill up to `sessions` finished sessions and `active` runs held, then every measurement."""
    figures: dict[str, Any] = {}
    finishing = sessions - filler.created + len(filler.held)
    to_hold = active - len(filler.held)
    seconds = await filler.create(finishing)
    print(f"  {finishing:,} sessions created in {seconds:.0f} s ({finishing / seconds:.0f} a second)")
    waited = await settle(stack, len(filler.held), "finishing")
    print(f"  ... and finished {waited:.2f} s later")
    seconds = await filler.create(to_hold, held=True)
    waited = await settle(stack, len(filler.held), "holding")
    print(f"  {to_hold:,} runs held running (created in {seconds:.1f} s, all running {waited:.2f} s later)")
    figures["fill"] = {"sessions": filler.created, "active": len(filler.held)}
    restart_gateway(stack)
    figures["reads"] = await measure_reads(stack, filler, repeats)
    figures["stream"] = await measure_stream(stack, filler, window)
    figures["memory"] = await index_memory(stack, filler.created)
    return figures


def report(baseline: dict[str, Any], scale: dict[str, Any]) -> list[tuple[str, ...]]:
    """The table: each read's p50 (and p99) on the nearly empty Redis and at scale, and their ratio."""
    nb, ns = baseline["fill"], scale["fill"]
    rows: list[tuple[str, ...]] = [
        (
            "read",
            f"{nb['sessions']:,} sessions / {nb['active']:,} active: p50 (p99) ms",
            f"{ns['sessions']:,} / {ns['active']:,}: p50 (p99) ms",
            "p50 ratio",
            "bytes at scale",
        ),
        ("---", "---", "---", "---", "---"),
    ]
    for name, at_scale in scale["reads"].items():
        before = baseline["reads"][name]
        rows.append(
            (
                name,
                f"{before['p50_ms']:.1f} ({before['p99_ms']:.1f})",
                f"{at_scale['p50_ms']:.1f} ({at_scale['p99_ms']:.1f})",
                f"{at_scale['p50_ms'] / before['p50_ms']:.2f}x",
                f"{at_scale['bytes']:,}",
            )
        )
    sb, ss = baseline["stream"], scale["stream"]
    rows.append(
        (
            "stream: overview events a second (largest gap ms)",
            f"{sb['per_second']:.2f} ({sb['gap_max_ms']:.0f})",
            f"{ss['per_second']:.2f} ({ss['gap_max_ms']:.0f})",
            f"{ss['per_second'] / sb['per_second']:.2f}x" if sb["per_second"] else "",
            f"{ss['event_bytes']:,}",
        )
    )
    rows.append(
        (
            "stream: first event ms; gateway CPU share",
            f"{sb['first_event_ms']:.0f}; {sb['gateway_cpu_share']:.0%}",
            f"{ss['first_event_ms']:.0f}; {ss['gateway_cpu_share']:.0%}",
            "",
            "",
        )
    )
    mb, ms = baseline["memory"], scale["memory"]
    rows.append(
        (
            "Redis: admin index bytes per session (all Redis)",
            f"{mb['index_bytes_per_session']:.0f} ({mb['used_memory_bytes_per_session']:,.0f})",
            f"{ms['index_bytes_per_session']:.0f} ({ms['used_memory_bytes_per_session']:,.0f})",
            f"{ms['index_bytes_per_session'] / mb['index_bytes_per_session']:.2f}x",
            f"{ms['sorted_sets_bytes'] + ms['run_strings_bytes']:,} in all",
        )
    )
    return rows


async def main(
    sessions: int,
    active: int,
    baseline_sessions: int,
    repeats: int,
    window: float,
    concurrency: int,
    output: str | None,
) -> None:
    began = time.monotonic()
    slowness = harness.calibrate()
    print(f"== calibration: this box takes {slowness:.2f}x the reference box's time; waits scale with it")
    results: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0], "slowness": round(slowness, 2)},
        "options": {"sessions": sessions, "active": active, "baseline_sessions": baseline_sessions, "repeats": repeats},
    }
    keys = ",".join(f"{tenant}:{tenant_key(tenant)}" for tenant in TENANTS)
    with tempfile.TemporaryDirectory() as data_dir:
        stack = Stack(
            data_dir,
            TOKENTAIL_API_KEYS=keys,
            TOKENTAIL_SECRET=SECRET,
            TOKENTAIL_ADMIN_KEYS=f"bench:{ADMIN_KEY}",
            TOKENTAIL_MAX_QUEUED_RUNS_PER_TENANT="0",
        )
        try:
            stack.start(
                TOKENTAIL_WORKER_CONCURRENCY=str(active + 100),
                TOKENTAIL_IDLE_TIMEOUT_SECONDS="3600",  # the runs held are silent for longer than the benchmark
                TOKENTAIL_LOG_LEVEL="critical",  # not the traceback of every run that fails on purpose
            )
            filler = Filler(stack, concurrency)
            held = max(1, active // 100)
            print(f"== baseline: {baseline_sessions:,} sessions, {held:,} runs active")
            results["baseline"] = await phase(stack, filler, baseline_sessions, held, repeats, window)
            print(f"== at scale: {sessions:,} sessions, {active:,} runs active")
            results["scale"] = await phase(stack, filler, sessions, active, repeats, window)
        finally:
            stack.close()
    results["seconds"] = round(time.monotonic() - began)
    print(f"== the console's reads, after {results['seconds']} s (ratios: at scale / baseline, p50)")
    for row in report(results["baseline"], results["scale"]):
        print("  | " + " | ".join(row) + " |")
    for label in ("baseline", "scale"):
        found = results[label]["reads"]
        print(
            f"  {label}: runs found by status=failed {found['runs, status=failed'].get('runs')} of"
            f" {found['runs, status=failed'].get('scanned')} scanned; status=active"
            f" {found['runs, status=active'].get('runs')}; pages followed"
            f" {found['runs, pages by cursor']['count']}"
        )
    if output:
        Path(output).write_text(json.dumps(results, indent=2))  # noqa: ASYNC240  # once, at the end


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 sessions, 100 active: a check of the script")
    parser.add_argument("--sessions", type=int, help="sessions at scale, each with a finished run (100,000)")
    parser.add_argument("--active", type=int, help="runs held running at scale (1,000)")
    parser.add_argument("--baseline-sessions", type=int, help="sessions of the baseline (500; --quick: 200)")
    parser.add_argument("--repeats", type=int, help="times each read is timed (30; --quick: 5)")
    parser.add_argument("--window", type=float, help="seconds the live stream is read (15; --quick: 3)")
    parser.add_argument("--concurrency", type=int, default=48, help="requests in flight while filling")
    parser.add_argument("--json", dest="output", help="also write the figures to this file")
    args = parser.parse_args()
    quick = args.quick
    sessions = args.sessions or (2_000 if quick else 100_000)
    active = args.active or (100 if quick else 1_000)
    baseline_sessions = args.baseline_sessions or (200 if quick else 500)
    if baseline_sessions >= sessions:
        parser.error("--baseline-sessions must be fewer than --sessions")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # figures appear as measured
    uvloop.run(
        main(
            sessions,
            active,
            baseline_sessions,
            args.repeats or (5 if quick else 30),
            args.window or (3.0 if quick else 15.0),
            args.concurrency,
            args.output,
        )
    )


if __name__ == "__main__":
    cli()
