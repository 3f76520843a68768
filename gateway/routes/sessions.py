"""REST: create sessions, queue runs, read and delete sessions."""

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from tokentail.gateway.access.ids import idempotent_id, new_run_id, new_session_id, new_steer_id, steer_id_of
from tokentail.gateway.commands import branching, deletion
from tokentail.gateway.commands.questions import answer_question
from tokentail.gateway.commands.turns import (
    check_agent_name,
    check_params,
    check_size,
    queue_follow_up,
    steer_active_run,
)
from tokentail.gateway.deps import (
    ApiKeyCallerDep,
    AuthDep,
    ChatSessionDep,
    IdempotencyKeyDep,
    OwnedSessionDep,
    ReadableSessionDep,
    RunBudgetDep,
    RunsDep,
    SettingsDep,
    StoreDep,
    TenantLinesDep,
)
from tokentail.gateway.schemas import (
    ERROR_RESPONSES,
    Answer,
    AnswerAccepted,
    CancelAccepted,
    CancelRun,
    CreateRun,
    CreateSession,
    ForkRequest,
    LineView,
    PendingInput,
    RunAccepted,
    RunView,
    SessionCreated,
    SessionDeleted,
    SessionView,
    SteerAccepted,
    SteerRequest,
    StreamToken,
    TokenRequest,
)
from tokentail.shared.store.client_indexes import chat_branch
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.errors import InvalidInput, RunNotFound
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord, transcript

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


def _events_url(request: Request, session_id: str) -> str:
    # What `request.url_for("stream_events", ...)` gives, without its search through every route (a
    # twentieth of what creating a session cost).
    return f"{request.base_url}v1/sessions/{session_id}/events"


@router.post("", status_code=201, responses={**ERROR_RESPONSES, 200: {"description": "the chat's session existed"}})
async def create_session(
    body: CreateSession,
    request: Request,
    response: Response,
    caller: ApiKeyCallerDep,
    idempotency_key: IdempotencyKeyDep = None,
) -> SessionCreated:
    """Create a session; with `input`, queue its first run. With `chat_id`, the session of a chat id
    your frontend chose: made now (201), or the existing one (200, with a fresh token). With an
    `Idempotency-Key`, the same request sent again answers as the first did, making nothing twice."""
    # One dependency (the caller), the rest of the app's state read here: the hot route calls this
    # with what FastAPI gives it (gateway/hot_routes.py).
    state = request.app.state
    store, runs, settings, auth = state.store, state.runs, state.settings, state.auth
    check_size(body.input, settings)
    check_agent_name(body.agent, settings)
    params = body.params.given() if body.params else {}
    check_params(body.model, params)
    session_id = idempotent_id("s_", caller.tenant, idempotency_key) if idempotency_key else new_session_id()
    if body.chat_id is not None:
        session_id = await auth.chat_session(caller, body.chat_id, store)  # another tenant's: 404
    webhook = await state.webhooks.url_for(caller.tenant, body.webhook)
    await state.run_budget.spend(caller.tenant, queues=body.input is not None)
    session = SessionRecord(
        session_id=session_id,
        created_at=time.time(),
        tenant=caller.tenant,
        model=body.model,
        agent=body.agent,
        params=params,
        metadata=body.metadata,
        webhook=webhook,
        user=body.user,
    )
    run_id = None
    if body.input is None:
        if not await runs.create_session(session) and not idempotency_key:
            response.status_code = 200
    else:
        run = RunRecord(
            run_id=idempotent_id("r_", caller.tenant, session_id, idempotency_key) if idempotency_key else new_run_id(),
            input=body.input,
            model=session.model,
            params=session.params,
            agent=session.agent,
        )
        await runs.queue_run(session.session_id, run, create=session)
        run_id = run.run_id
    token, expires_at = auth.issue_token(session.session_id, caller.tenant, body.token_scope)
    return SessionCreated(
        session_id=session.session_id,
        run_id=run_id,
        events_url=_events_url(request, session.session_id),
        stream_token=token,
        stream_token_expires_at=expires_at,
        stream_token_scope=body.token_scope,
    )


@router.post("/{session_id}/runs", status_code=202, responses=ERROR_RESPONSES)
async def create_run(
    body: CreateRun, request: Request, access: ChatSessionDep, idempotency_key: IdempotencyKeyDep = None
) -> RunAccepted:
    """Queue a follow-up turn; with multitask `steer` and a run active, steer that run instead (`status`
    steered, the steer's `steer_id`). With an `Idempotency-Key`, the same request sent again queues (or
    steers) nothing more and answers as the first did."""
    caller, session_id, state = access.caller, access.session_id, request.app.state
    run_id = idempotent_id("r_", caller.tenant, session_id, idempotency_key) if idempotency_key else new_run_id()
    run = await queue_follow_up(
        state.store, state.runs, state.settings, state.run_budget, caller, session_id, body, run_id
    )
    accepted = RunAccepted(run_id=run.run_id, events_url=_events_url(request, session_id))
    if run.run_id != run_id:  # it steered the active run (writes.py: the steer's id is the request's run's)
        accepted.status, accepted.steer_id = "steered", steer_id_of(run_id)
    return accepted


@router.post("/{session_id}/cancel", status_code=202, responses=ERROR_RESPONSES)
async def cancel_run(access: ChatSessionDep, runs: RunsDep, body: CancelRun | None = None) -> CancelAccepted:
    """Cancel the active run, from any replica. Idempotent: the worker running it stops the model
    and writes `run.cancelled` as the run's last event; a run no worker holds yet (still queued)
    ends at once. With `run_id` (the run the client saw), only that run, if it is still the active
    one: else `not_active`, and nothing is cancelled. Closing a stream never cancels a run."""
    outcome, run_id = await runs.cancel_run(access.session_id, body.run_id if body is not None else None)
    return CancelAccepted.of(outcome, run_id)


@router.post("/{session_id}/steer", status_code=202, responses=ERROR_RESPONSES)
async def steer_run(
    body: SteerRequest,
    access: ChatSessionDep,
    runs: RunsDep,
    settings: SettingsDep,
    budget: RunBudgetDep,
    idempotency_key: IdempotencyKeyDep = None,
) -> SteerAccepted:
    """Add input to the active run while it works, without cancelling it: stored with the session
    before this answers (`steer.accepted`), taken in by the run's agent at its next boundary, once
    (`steer.applied`), through a dropped connection, a gateway replaced or a worker killed. With
    `run_id`, only if that run is still the active one. 409 `run_not_active` when no run is active
    (or not the one named), `steer_limit` when the run took in as many steers as one may; 429 when as
    many steers wait as may, or the tenant's run budget is spent (a steer spends it as a run does).
    With an `Idempotency-Key`, the same request sent again, whenever, steers once."""
    caller, session_id = access.caller, access.session_id
    steer_id = idempotent_id("st_", caller.tenant, session_id, idempotency_key) if idempotency_key else new_steer_id()
    return await steer_active_run(runs, settings, budget, caller.tenant, session_id, body, steer_id)


@router.post("/{session_id}/runs/{run_id}/input", status_code=202, responses=ERROR_RESPONSES)
async def answer_input(
    access: ChatSessionDep, run_id: str, body: Answer, store: StoreDep, runs: RunsDep
) -> AnswerAccepted:
    """Answer the question a run waits for (its `input.required` event), from any client: the run
    goes on, on any worker. Once: a second answer, or one to an expired or cancelled question, is 409;
    an answer that does not match the question's schema is 422."""
    seq = await answer_question(store, runs, access.session_id, run_id, body.input_id, body.answer)
    return AnswerAccepted(run_id=run_id, input_id=body.input_id, event_id=seq)


@router.get("/{session_id}", responses=ERROR_RESPONSES)
async def get_session(access: ReadableSessionDep, store: StoreDep, lines: TenantLinesDep) -> SessionView:
    session = await store.get_session(access.session_id)
    view = await _view(store, session)
    if session.status == "queued" and session.dispatch:  # where its run waits, and why (a cap, or its turn)
        place = await lines.place_of(session.dispatch)
        view.line = LineView(place=place.place, waiting_for=place.waiting_for) if place else None
    return view


@router.get("/{session_id}/runs/{run_id}", responses=ERROR_RESPONSES)
async def get_run(access: ReadableSessionDep, run_id: str, store: StoreDep) -> RunView:
    """One run's record, as the session's state shows it, with its children (sub-agent runs) and their
    status: a UI's view of one branch of the tree. 404 `run_not_found` for a run not of this session."""
    session = await store.get_session(access.session_id)
    run = session.run(run_id)
    if run is None:
        raise RunNotFound(access.session_id, run_id)
    return RunView.of(run, session.runs)


@router.post("/{session_id}/fork", status_code=201, responses=ERROR_RESPONSES)
async def fork_session(
    access: OwnedSessionDep,
    store: StoreDep,
    runs: RunsDep,
    settings: SettingsDep,
    budget: RunBudgetDep,
    body: ForkRequest | None = None,
    after: Annotated[
        int | None,
        Query(ge=0, description="the last event id the fork keeps: 0, or a run's terminal event (a turn's end)"),
    ] = None,
    idempotency_key: IdempotencyKeyDep = None,
) -> SessionView:
    """A new session holding this one's events up to one of them (same ids and data; its ids go on from
    there), its record and the runs ended by then; the session itself is untouched.

    `{"at": <event id>}`: any event. Inside a run (time travel), the run goes on in the fork from there
    (`continue`, the default there): `run.started` with `reason: "fork"` and `from_event_id`; the steps it
    recorded by then (tool results, model turns) are replayed, never done again; `agent`, `model`,
    `params` and `instructions` change what it does from there on. With `continue: false` it ends there,
    cancelled, and the fork holds its events. `?after=N`: a branch after a turn (0, or the terminal event of
    a run with no other run going then; else 422, naming the nearest).

    A fork is a session made: one of the tenant's runs per minute, and its bytes of what its forks may
    copy per hour (429 beyond either, making nothing). With an `Idempotency-Key`, the same request sent
    again answers with the same fork."""
    caller, session_id = access.caller, access.session_id
    if (body is None) == (after is None):
        raise InvalidInput("fork: give `?after=` (a turn's end) or a body with `at` (any event), one of them")
    fork_id = idempotent_id("s_", caller.tenant, "fork", session_id, idempotency_key) if idempotency_key else None
    if body is None:
        assert after is not None
        fork = await branching.fork_session(store, runs, settings, budget, session_id, after, fork_id, for_a_run=False)
        return await _view(store, fork)
    check_agent_name(body.agent, settings)
    params = body.params.given() if body.params else None
    check_params(body.model, params or {})
    overrides = branching.Overrides(body.agent, body.model, params, body.instructions)
    go_on = body.continue_
    fork = await branching.fork_at(
        store, runs, settings, budget, session_id, body.at, go_on=go_on, overrides=overrides, fork_id=fork_id
    )
    return await _view(store, fork)


async def _view(store: SessionStore, session: SessionRecord) -> SessionView:
    """The session as `GET /v1/sessions/{id}` shows it."""
    active = session.active_run
    partial = await store.partial_text(session.session_id, active) if active is not None else ""
    return SessionView(
        session_id=session.session_id,
        status=session.status,
        created_at=session.created_at,
        model=session.model,
        agent=session.agent,
        params=session.params,
        metadata=session.metadata,
        last_event_id=session.last_event_id,
        active_run_id=session.active_run_id,
        pending_input=next(iter(pending := _pending_inputs(active)), None),
        pending_inputs=pending,
        forked_from=session.forked_from,
        runs=session.runs,
        transcript=transcript(session.runs, partial),
    )


def _pending_inputs(run: RunRecord | None) -> list[PendingInput]:
    if run is None:
        return []
    return [PendingInput.model_validate(q.event(run.run_id).model_dump(by_alias=True)) for q in run.questions]


@router.delete(
    "/{session_id}",
    status_code=204,
    responses={**ERROR_RESPONSES, 202: {"model": SessionDeleted, "description": "deleted; the archive's copy later"}},
)
async def delete_session(access: OwnedSessionDep, store: StoreDep, runs: RunsDep) -> Response:
    """Delete the session: 204, or 202 when the archive is down (deleted, its archived copy once it is back)."""
    session_id = access.session_id
    session = await store.get_session(session_id)  # 404 or 410 if there is nothing to delete
    if await deletion.delete_session(runs, store, session):
        return Response(status_code=204)
    return JSONResponse(SessionDeleted(session_id=session_id).model_dump(), status_code=202)


@router.post("/{session_id}/token", responses=ERROR_RESPONSES)
async def refresh_token(
    access: ReadableSessionDep,
    auth: AuthDep,
    store: StoreDep,
    body: TokenRequest | None = None,
) -> StreamToken:
    """A fresh stream token for the session, for an API key or a stream token that has not expired
    yet (refresh before it does: an expired token is refused everywhere, here too). A token refreshes
    to its own scope unless a body asks otherwise; only an API key or a chat token gets a chat token."""
    caller, session_id = access.caller, access.session_id
    scope = (
        body.scope if body is not None and body.scope is not None else "read" if caller.has_api_key else caller.scope
    )
    if scope == "chat":
        caller.require_chat()
    # 404 or 410 if the session is gone; a chat's session may be, while the chat goes on in its branch
    await store.stream_position(await chat_branch(store.redis, store.keys, store.settings, session_id) or session_id)
    token, expires_at = auth.issue_token(session_id, caller.tenant, scope)
    return StreamToken(stream_token=token, stream_token_expires_at=expires_at, stream_token_scope=scope)
