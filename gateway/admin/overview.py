"""The overview: each tenant's line, slots, cap and whether it is parked (the admission keys), the
workers and their throughput (their heartbeats), the newest runs still going, and those that failed or
were taken over recently (the runs index). Each part reads a bounded number of keys: the tenants with
slots or lines, one hash of workers, and one page of the index."""

import time

from tokentail.gateway.admin.access import Admin
from tokentail.gateway.admin.models import Counts, Metrics, Overview, Point, RunSummary, Tenant, Worker
from tokentail.gateway.admin.runs import RunLists
from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.features.admission import Admission, TenantLines
from tokentail.shared.features.workers import STEP_SECONDS, WorkerBeat, WorkerRegistry, throughput
from tokentail.shared.vocabulary.records import ACTIVE_STATUSES

RECENT = 20
ACTIVE_SHOWN = 50
CHART_MINUTES = 5
# The newest runs the overview looks at for those going (and, on a Redis Cluster, those in trouble): it is
# made up to twice a second, so it reads a quarter of a page's budget (`runs?status=` pages on through the rest).
OVERVIEW_RUNS = 250
TROUBLED_READ = 4 * RECENT  # entries of the index of runs in trouble read, some of sessions gone meanwhile
WORKER_RUNS_SHOWN = 10  # a worker may hold hundreds: the overview, sent every second, lists a few


class Overviews:
    def __init__(self, queue: AnyRedis, admission: Admission, runs: RunLists, tenants_known: list[str]) -> None:
        self._admission = admission
        self._runs = runs
        self._workers = WorkerRegistry(queue, admission.keys)
        self._lines = TenantLines(queue, admission.keys, 0, admission)  # (its bound is the commands')
        self._tenants_known = tenants_known  # those with API keys: listed even with nothing going

    async def tenants(self, admin: Admin) -> list[Tenant]:
        return [
            Tenant(
                tenant=line.tenant,
                running=line.running,
                waiting=line.waiting,
                cap=self._admission.cap_of(line.tenant),
                parked=line.parked,
            )
            for line in await self._lines.figures(self._tenants_known, admin.tenant)
        ]

    async def workers(self, admin: Admin) -> list[WorkerBeat]:
        """The workers' beats: the whole deployment's (its processes, the runs they hold, its throughput),
        which an admin key sees, and a tenant's key does not (none)."""
        if admin.tenant is not None:
            return []
        beats = await self._workers.read()
        return await self._runs_still_held(beats, time.time())

    async def _runs_still_held(self, beats: list[WorkerBeat], now: float) -> list[WorkerBeat]:
        """A dead worker's last beat lists what it held then: of those, the runs another worker took over
        since, or that ended, are no longer its own. (A live worker's list is at most a beat old.) Reads
        the records of dead workers' runs alone: at most their slots each, for FORGET_SECONDS."""
        dead = [beat for beat in beats if not beat.alive(now) and beat.runs]
        holders = await self._runs.holders([ref for beat in dead for ref in beat.runs])
        for beat in dead:
            beat.runs = [ref for ref in beat.runs if holders.get(ref.run_id) == beat.worker]
        return beats

    @staticmethod
    def shown_workers(beats: list[WorkerBeat], now: float, most: int | None = None) -> list[Worker]:
        """`most`: of the runs each holds, how many are listed (all its runs are counted)."""
        return [
            Worker(
                **beat.model_dump(exclude={"runs"}),
                alive=beat.alive(now),
                running=len(beat.runs),
                runs=beat.runs[:most],
            )
            for beat in beats
        ]

    @staticmethod
    def metrics(admin: Admin, beats: list[WorkerBeat], minutes: float, now: float) -> Metrics:
        """The deployment's throughput (none for a tenant's key: it is every tenant's)."""
        points = [Point(**point._asdict()) for point in throughput(beats, minutes, now)] if admin.tenant is None else []
        return Metrics(step_seconds=STEP_SECONDS, points=points)

    async def overview(self, admin: Admin) -> Overview:
        now = time.time()
        tenants = await self.tenants(admin)
        beats = await self.workers(admin)
        if self._runs.has_troubled:  # the runs in trouble, from their own index: runs queued cannot crowd them out
            page = await self._runs.page(admin, _going, limit=ACTIVE_SHOWN, budget=OVERVIEW_RUNS)
            active = page.runs
            recent = (await self._runs.page(admin, _any, limit=RECENT, budget=TROUBLED_READ, troubled=True)).runs
        else:
            active, recent = await self._newest_both(admin)
        counts = Counts(
            running=sum(len(beat.runs) for beat in beats if beat.alive(now))
            if admin.tenant is None
            else sum(tenant.running for tenant in tenants),  # (its slots: no workers shown to it)
            queued=sum(tenant.waiting for tenant in tenants),
            waiting=sum(1 for run in active if run.status == "waiting"),
        )
        return Overview(
            tenants=tenants,
            workers=self.shown_workers(beats, now, WORKER_RUNS_SHOWN),
            metrics=self.metrics(admin, beats, CHART_MINUTES, now),
            active=active,
            recent=recent,
            counts=counts,
        )

    async def _newest_both(self, admin: Admin) -> tuple[list[RunSummary], list[RunSummary]]:
        """On a Redis Cluster, with no index of runs in trouble: one page of the newest runs gives both
        lists, each to its own count (runs going must not crowd out those failed or taken over): it reads
        on until both are full, or the page's budget is spent."""
        left = {_going: ACTIVE_SHOWN, _troubled: RECENT}

        def wanted(run: RunSummary) -> bool:
            fits = [kind for kind, room in left.items() if room and kind(run)]
            for kind in fits:
                left[kind] -= 1
            return bool(fits)

        page = await self._runs.page(admin, wanted, limit=ACTIVE_SHOWN + RECENT, budget=OVERVIEW_RUNS)
        return [run for run in page.runs if _going(run)][:ACTIVE_SHOWN], [run for run in page.runs if _troubled(run)][
            :RECENT
        ]


def _any(_: RunSummary) -> bool:
    return True


def _going(run: RunSummary) -> bool:
    return run.status in ACTIVE_STATUSES


def _troubled(run: RunSummary) -> bool:
    """As lib/run_index.lua's index_troubled lists a run (read here where that index is not kept)."""
    return run.status == "failed" or run.attempt > 1
