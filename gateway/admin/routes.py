"""The admin API (`/v1/admin/...`) and the console's page (`/console`): docs/console.md, docs/api.md.

Every route takes an admin credential (access.py); a tenant's key sees its own tenant, and another
tenant's session or run answers 404 as a missing one does. Actions go through the commands the API's
own routes use (cancel, answer, delete, the slot audit), and each is logged with who did it."""

import logging
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tokentail.gateway.access.auth import Authenticator, Caller
from tokentail.gateway.access.ids import is_session_id
from tokentail.gateway.access.peers import ClientAddresses
from tokentail.gateway.admin.access import Admin, AdminAuth
from tokentail.gateway.admin.live import LiveStreams, Snapshots
from tokentail.gateway.admin.models import (
    AnswerBody,
    Answered,
    Audited,
    Cancelled,
    Expired,
    ForkBody,
    Forked,
    ForkMade,
    Found,
    Metrics,
    Overview,
    RunPage,
    SessionDetail,
    Tenants,
    Timeline,
    WhoAmI,
    Workers,
)
from tokentail.gateway.admin.overview import Overviews
from tokentail.gateway.admin.runs import RunLists, StatusFilter, run_filter, session_detail
from tokentail.gateway.admin.timeline import EVENTS_PAGE, EVENTS_PAGE_MAX, timeline
from tokentail.gateway.commands import branching, deletion
from tokentail.gateway.commands.questions import answer_question, expire_question
from tokentail.gateway.commands.turns import check_agent_name, check_params
from tokentail.gateway.commands.writes import SessionWrites
from tokentail.gateway.schemas import ERROR_RESPONSES
from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.features.admission import Admission, SlotAudit, TenantLines
from tokentail.shared.plumbing.logs import bind
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.errors import InvalidInput, RunNotFound, SessionNotFound
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord

logger = logging.getLogger(__name__)

PAGE = Path(__file__).parent.parent / "static" / "console" / "index.html"


class Console:
    """What the admin routes read and act with: made once by the gateway's lifespan."""

    def __init__(
        self,
        sessions: AnyRedis,
        queue: AnyRedis,
        store: SessionStore,
        runs: SessionWrites,
        auth: Authenticator,
        lines: TenantLines,
    ) -> None:
        self.settings = settings = runs.settings
        keys = Keys(settings.key_prefix)
        self.sessions, self.queue, self.store, self.writes, self.auth = sessions, queue, store, runs, auth
        self.lines = lines
        self.admission = Admission.of(settings)
        self.runs = RunLists(sessions, runs.run_index, keys)
        self.overviews = Overviews(queue, self.admission, self.runs, sorted(set(settings.tenants_by_key.values())))
        self.live = LiveStreams(Snapshots(self._overview_json, self.runs.newest))
        self.lease_seconds = settings.lease_ms / 1000

    async def session(self, admin: Admin, session_id: str) -> SessionRecord:
        """The session, if the admin sees it: for a tenant's key, another tenant's answers 404 whether it
        exists, expired or was deleted, by the rule the API's own routes keep (`check_access`)."""
        if not is_session_id(session_id):
            raise SessionNotFound(session_id)
        if admin.tenant is not None:
            await self.auth.check_access(Caller(tenant=admin.tenant), session_id, self.store)
        return await self.store.get_session(session_id)

    async def timeline(self, session: SessionRecord, run: RunRecord, after: int | None, limit: int) -> Timeline:
        """The run's timeline; while it waits in its tenant's line, its place there and what holds it."""
        made = await timeline(self.store, self.settings, session, run, after, limit)
        forks = await self.writes.run_index.forks_of(session.session_id, run.run_id)
        made.forks = [ForkMade(session_id=fork, event_id=at, at=when) for fork, at, when in forks]
        if run.status == "queued" and session.active_run_id == run.run_id and session.dispatch:
            place = await self.lines.place_of(session.dispatch)
            for stage in made.stages:
                if stage.kind == "queued" and place is not None:
                    stage.place, stage.waiting_for = place.place, place.waiting_for  # type: ignore[attr-defined]
        return made

    async def _overview_json(self, admin: Admin) -> bytes:
        return (await self.overviews.overview(admin)).model_dump_json().encode()


admin_credentials = HTTPBearer(auto_error=False, description="an admin key, or a tenant's API key (its tenant only)")


async def admin_caller(
    request: Request, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_credentials)]
) -> Admin:
    auth: AdminAuth = request.app.state.admin_auth
    addresses: ClientAddresses = request.app.state.client_addresses
    admin = auth.admin_of(bearer.credentials if bearer else None, addresses.is_this_machine(request.scope))
    bind(caller=f"admin:{admin.who}")  # the request's logs name it, and so does an answer it gives
    return admin


async def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


AdminDep = Annotated[Admin, Depends(admin_caller)]
ConsoleDep = Annotated[Console, Depends(console_of)]

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=ERROR_RESPONSES)


def _run(session: SessionRecord, run_id: str) -> RunRecord:
    run = session.run(run_id)
    if run is None:
        raise RunNotFound(session.session_id, run_id)
    return run


def _acted(admin: Admin, action: str, session_id: str, **more: object) -> None:
    details = " ".join(f"{name}={value}" for name, value in more.items())
    logger.info("console: %s %s session %s %s", admin.who, action, session_id, details)


@router.get("/whoami")
async def whoami(request: Request, admin: AdminDep) -> WhoAmI:
    """Who this credential is, and which tenants it sees."""
    return WhoAmI(who=admin.who, tenant=admin.tenant, auth=request.app.state.admin_auth.required)


@router.get("/overview")
async def overview(admin: AdminDep, console: ConsoleDep) -> Overview:
    """Tenants' lines and caps, workers, throughput, the newest runs going and those in trouble."""
    return await console.overviews.overview(admin)


@router.get("/tenants")
async def tenants(admin: AdminDep, console: ConsoleDep) -> Tenants:
    """Each tenant's runs holding a slot, waiting in its line, its cap, and whether it is parked."""
    return Tenants(tenants=await console.overviews.tenants(admin))


@router.get("/workers")
async def workers(admin: AdminDep, console: ConsoleDep) -> Workers:
    """The worker processes that beat in the last ten minutes, alive or not."""
    beats = await console.overviews.workers(admin)
    return Workers(workers=Overviews.shown_workers(beats, time.time()))


@router.get("/metrics")
async def metrics(admin: AdminDep, console: ConsoleDep, minutes: Annotated[float, Query(gt=0, le=5)] = 5) -> Metrics:
    """Tokens per second and mean time to first token over the last minutes, from the workers' beats."""
    return Overviews.metrics(admin, await console.overviews.workers(admin), minutes, time.time())


@router.get("/runs")
async def runs(
    admin: AdminDep,
    console: ConsoleDep,
    status: StatusFilter | None = None,
    tenant: Annotated[str | None, Query(max_length=64)] = None,
    user: Annotated[str | None, Query(max_length=256)] = None,
    since: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    until: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RunPage:
    """Runs, newest first, by status (`active`: queued, running or waiting), tenant, end user and when
    they were queued. A page reads at most 1,000 index entries: it may come back short with a
    `next_cursor`, to go on from."""
    try:
        return await console.runs.page(admin, run_filter(status, user), cursor, limit, tenant, since, until)
    except ValueError as exc:
        raise InvalidInput(f"cursor: {exc}") from None


@router.get("/find")
async def find(admin: AdminDep, console: ConsoleDep, q: Annotated[str, Query(min_length=1, max_length=300)]) -> Found:
    """The session of a session id, or of a run id (a run the index lists); 404 if none."""
    q = q.strip()
    if is_session_id(q):
        await console.session(admin, q)
        return Found(session_id=q, run_id=None)
    session_id = await console.runs.session_of(q)
    if session_id is None:
        raise SessionNotFound(q)
    await console.session(admin, session_id)
    return Found(session_id=session_id, run_id=q)


@router.get("/sessions/{session_id}")
async def session(admin: AdminDep, console: ConsoleDep, session_id: str) -> SessionDetail:
    """A session's runs (children after their parents), its transcript and its open questions."""
    return await session_detail(console.store, await console.session(admin, session_id))


@router.get("/sessions/{session_id}/runs/{run_id}/timeline")
async def run_timeline(
    admin: AdminDep,
    console: ConsoleDep,
    session_id: str,
    run_id: str,
    after: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=EVENTS_PAGE_MAX)] = EVENTS_PAGE,
) -> Timeline:
    """A run's stages on one time axis, and a page of its events (after `after`)."""
    session = await console.session(admin, session_id)
    return await console.timeline(session, _run(session, run_id), after, limit)


@router.post("/sessions/{session_id}/runs/{run_id}/cancel", status_code=202)
async def cancel(admin: AdminDep, console: ConsoleDep, session_id: str, run_id: str) -> Cancelled:
    """Cancel the run if it is the session's active run (as `POST /v1/sessions/{id}/cancel` with its id)."""
    _run(await console.session(admin, session_id), run_id)
    outcome, cancelled = await console.writes.cancel_run(session_id, run_id)
    _acted(admin, "cancelled", session_id, run=run_id, outcome=outcome.value)
    return Cancelled(run_id=cancelled or run_id, outcome=outcome.value)


@router.post("/sessions/{session_id}/runs/{run_id}/fork", status_code=201)
async def fork(
    admin: AdminDep, console: ConsoleDep, request: Request, session_id: str, run_id: str, body: ForkBody
) -> Forked:
    """Fork the session at one of the run's events (`at`), or re-run the run (`at` left out: after its
    last recorded step), the run going on in the fork (as `POST /v1/sessions/{id}/fork` with `at`):
    spent from the session's tenant's budgets. The fork's timeline names the run's session it came from."""
    session = await console.session(admin, session_id)
    run = _run(session, run_id)
    if run.parent_run_id is not None:
        raise InvalidInput(f"run {run_id} is a child run: fork its session at an event of its parent's")
    at = body.at if body.at is not None else await branching.last_step_of(console.store, session, run)
    going = session.run_shown_at(at)  # (the run a fork at `at` goes on with: branching.fork_at)
    if going is None or going.run_id != run_id:
        raise InvalidInput(f"at: event {at} is not one of run {run_id}'s before its end")
    check_agent_name(body.agent, console.settings)
    check_params(body.model, {})
    overrides = branching.Overrides(agent=body.agent, model=body.model, instructions=body.instructions)
    budget = request.app.state.run_budget
    forked = await branching.fork_at(
        console.store, console.writes, console.settings, budget, session_id, at, go_on=True, overrides=overrides
    )
    _acted(admin, "forked", session_id, run=run_id, at=str(at), fork=forked.session_id)
    return Forked(session_id=forked.session_id, run_id=run_id, at=at)


@router.post("/sessions/{session_id}/runs/{run_id}/answers", status_code=202)
async def answer(admin: AdminDep, console: ConsoleDep, session_id: str, run_id: str, body: AnswerBody) -> Answered:
    """Answer a question the run waits for (as `POST /v1/sessions/{id}/runs/{run_id}/input`)."""
    await console.session(admin, session_id)
    seq = await answer_question(console.store, console.writes, session_id, run_id, body.input_id, body.answer)
    _acted(admin, "answered", session_id, run=run_id, input=body.input_id)
    return Answered(event_id=seq)


@router.post("/sessions/{session_id}/runs/{run_id}/questions/{input_id}/expire", status_code=202)
async def expire(admin: AdminDep, console: ConsoleDep, session_id: str, run_id: str, input_id: str) -> Expired:
    """End a question the run waits for now, as its deadline would: the run fails (`input_expired`) or
    the question takes its default answer, within a second (a worker's reaper ends it)."""
    await console.session(admin, session_id)
    await expire_question(console.store, console.writes, session_id, run_id, input_id)
    _acted(admin, "expired a question of", session_id, run=run_id, input=input_id)
    return Expired(run_id=run_id, input_id=input_id)


@router.delete("/sessions/{session_id}", status_code=204)
async def delete(admin: AdminDep, console: ConsoleDep, session_id: str) -> Response:
    """Delete the session (as `DELETE /v1/sessions/{id}`): 204."""
    session = await console.session(admin, session_id)
    await deletion.delete_session(console.writes, console.store, session)
    _acted(admin, "deleted", session_id)
    return Response(status_code=204)


@router.post("/slots/audit")
async def audit(admin: AdminDep, console: ConsoleDep) -> Audited:
    """Give back now every slot held by a run that no longer runs (what the workers' audit does after
    30 seconds); a tenant's key, its tenant's slots only."""
    slots = SlotAudit(console.queue, console.sessions, console.admission, console.lease_seconds)
    given_back = await slots.audit(after=0, tenant=admin.tenant)
    _acted(admin, "audited slots", "-", tenant=admin.tenant or "every", given_back=given_back)
    return Audited(given_back=given_back)


@router.get("/stream", response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def stream(
    admin: AdminDep,
    console: ConsoleDep,
    session: Annotated[str | None, Query(max_length=100)] = None,
    run: Annotated[str | None, Query(max_length=100)] = None,
) -> StreamingResponse:
    """The console's live stream (SSE): `overview` snapshots, and `timeline` ones of the run followed."""
    followed = None
    if session is not None and run is not None:
        _run(await console.session(admin, session), run)
        session_id, run_id = session, run

        async def followed_timeline() -> tuple[int, bytes] | None:
            try:
                position, _ = await console.store.stream_position(session_id)
                record = await console.store.get_session(session_id)
                made = await console.timeline(record, _run(record, run_id), None, EVENTS_PAGE)
            except (SessionNotFound, RunNotFound):  # deleted or expired meanwhile: its page finds out itself
                return None
            return position, made.model_dump_json().encode()

        followed = followed_timeline
    body = console.live.stream(admin, followed)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


def install(app: FastAPI, settings: Settings) -> None:
    """The admin routes and the console's page on `app` (its lifespan sets `app.state.console`)."""
    app.state.admin_auth = AdminAuth(settings)
    app.include_router(router)

    @app.get("/console", include_in_schema=False)
    @app.get("/console/sessions/{session_id}", include_in_schema=False)
    @app.get("/console/sessions/{session_id}/runs/{run_id}", include_in_schema=False)
    async def console_page() -> FileResponse:
        return FileResponse(PAGE, headers={"Cache-Control": "no-cache"})
