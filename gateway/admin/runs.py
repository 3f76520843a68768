"""Runs as the console lists them: pages of the runs index (shared/store/run_index.py), each entry read
from its run's record, and one session's runs, transcript and open questions."""

from collections.abc import Callable
from typing import Literal

from tokentail.gateway.admin.access import Admin
from tokentail.gateway.admin.models import OpenQuestion, RunPage, RunSummary, SessionDetail, SessionRun
from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.features.workers import RunRef
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import SessionStore, read_runs
from tokentail.shared.store.run_index import SCAN_BUDGET, IndexedRun, RunIndex
from tokentail.shared.vocabulary.records import ACTIVE_STATUSES, PUBLIC_TENANT, RunRecord, SessionRecord, transcript

INPUT_SHOWN = 200
ACTIVE = "active"  # a status filter: queued, running or waiting
Filter = Callable[[RunSummary], bool]


def summary(run: RunRecord, session_id: str, tenant: str, session_user: str | None) -> RunSummary:
    return RunSummary(
        session_id=session_id,
        run_id=run.run_id,
        tenant=tenant,
        user=run.user or session_user,  # (a run that names none counts against its session's)
        agent=run.agent,
        model=run.model,
        status=run.status,
        attempt=run.attempt,
        queued_at=run.queued_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        input=run.input[:INPUT_SHOWN],
        error=run.error.message if run.error is not None else None,
    )


def run_filter(status: str | None = None, user: str | None = None) -> Filter:
    def keep(run: RunSummary) -> bool:
        if status == ACTIVE and run.status not in ACTIVE_STATUSES:
            return False
        if status not in (None, ACTIVE) and run.status != status:
            return False
        return user is None or run.user == user

    return keep


class RunLists:
    def __init__(self, redis: AnyRedis, index: RunIndex, keys: Keys) -> None:
        self._redis = redis
        self._index = index
        self._keys = keys

    async def page(
        self,
        admin: Admin,
        keep: Filter,
        cursor: str | None = None,
        limit: int = 50,
        tenant: str | None = None,
        since: float | None = None,
        until: float | None = None,
        budget: int = SCAN_BUDGET,
        troubled: bool = False,
    ) -> RunPage:
        """Newest first: `tenant`'s runs (an admin's own tenant, for a tenant's key), those `keep` keeps,
        of at most `budget` index entries (`troubled`: of the index of runs in trouble)."""
        if admin.tenant is not None:
            if tenant not in (None, admin.tenant):
                return RunPage(runs=[], next_cursor=None, scanned=0)  # another tenant's: as if it had none
            tenant = admin.tenant
        found: list[RunSummary] = []
        scanned = 0

        async def read(batch: list[IndexedRun]) -> list[bool]:
            nonlocal scanned
            scanned += len(batch)
            summaries = await self.summaries(batch, tenant, troubled)
            wanted = [run is not None and keep(run) for run in summaries]
            found.extend(run for run, want in zip(summaries, wanted, strict=True) if run is not None and want)
            return wanted

        page = await self._index.newest(tenant, cursor, read, limit, since, until, budget, troubled)
        return RunPage(runs=found[:limit], next_cursor=page.next_cursor, scanned=scanned)

    async def newest(self, admin: Admin) -> object:
        """What changes when a run the admin sees is queued."""
        return await self._index.newest_entry(admin.tenant)

    async def session_of(self, run_id: str) -> str | None:
        return await self._index.session_of(run_id)

    async def holders(self, refs: list[RunRef]) -> dict[str, str]:
        """By run id, the worker process that holds each of these runs now (its record's latest start's),
        for those running."""
        if not refs:
            return {}
        records = await read_runs(self._redis, [(self._keys.session(ref.session_id), ref.run_id) for ref in refs])
        runs = [run for run in records if run is not None]
        return {run.run_id: run.workers[-1] for run in runs if run.status == "running" and run.workers}

    @property
    def has_troubled(self) -> bool:
        return self._index.has_troubled

    async def summaries(
        self, batch: list[IndexedRun], tenant: str | None, troubled: bool = False
    ) -> list[RunSummary | None]:
        """Each entry's run as it is now; None for one whose session is gone (dropped from the index)."""
        summaries: list[RunSummary | None] = []
        gone = []
        for entry, listed in zip(batch, await self._index.now(batch), strict=True):
            if listed is None:
                gone.append(entry)
                summaries.append(None)
            else:
                summaries.append(summary(listed.run, entry.session_id, listed.tenant, listed.session_user))
        await self._index.drop(tenant, gone, troubled)
        return summaries


def session_runs(session: SessionRecord) -> list[SessionRun]:
    """Its runs, each child after its parent (depth first), as the console draws the tree."""
    children: dict[str | None, list[RunRecord]] = {}
    for run in session.runs:
        children.setdefault(run.parent_run_id, []).append(run)
    ordered: list[RunRecord] = []

    def add(parent: str | None) -> None:
        for run in children.get(parent, []):
            ordered.append(run)
            add(run.run_id)

    add(None)
    listed = {run.run_id for run in ordered}
    ordered += [run for run in session.runs if run.run_id not in listed]  # a child whose parent's record is gone
    return [
        SessionRun(
            **summary(run, session.session_id, session.tenant, session.user).model_dump(),
            parent_run_id=run.parent_run_id,
            depth=run.depth,
            name=run.name,
        )
        for run in ordered
    ]


async def session_detail(store: SessionStore, session: SessionRecord) -> SessionDetail:
    active = session.active_run
    partial = await store.partial_text(session.session_id, active) if active is not None else ""
    questions = [
        OpenQuestion(
            run_id=run.run_id,
            input_id=question.input_id,
            kind=question.kind,
            prompt=question.prompt,
            answer_schema=question.answer_schema,
            expires_at=question.expires_at,
        )
        for run in session.runs
        for question in run.questions
    ]
    return SessionDetail(
        session_id=session.session_id,
        tenant=session.tenant or PUBLIC_TENANT,
        user=session.user,
        created_at=session.created_at,
        runs=session_runs(session),
        transcript=transcript(session.runs, partial),
        questions=questions,
    )


StatusFilter = Literal["queued", "running", "waiting", "completed", "failed", "cancelled", "active"]
