"""What asking for a run does, from REST, a WebSocket or a chat UI's protocol: check the request,
spend the tenant's run budget, and queue the run."""

import time
from typing import Any, NamedTuple

from tokentail.gateway.access.auth import Authenticator, Caller
from tokentail.gateway.access.ids import idempotent_id, new_run_id
from tokentail.gateway.access.limits import RunBudget
from tokentail.gateway.commands.branching import ClientChat, branch_point, fork_session
from tokentail.gateway.commands.questions import answer_all
from tokentail.gateway.commands.webhook_urls import SessionWebhooks
from tokentail.gateway.commands.writes import SessionWrites
from tokentail.gateway.schemas import CreateRun, SteerAccepted, SteerRequest
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.store.scripts.runs import Queued
from tokentail.shared.vocabulary.catalog import check_agent, parse_model
from tokentail.shared.vocabulary.errors import (
    Forbidden,
    InputNotPending,
    InputTooLarge,
    InvalidInput,
    SessionExpired,
    SessionNotFound,
)
from tokentail.shared.vocabulary.params import check_params_for
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord
from tokentail.shared.vocabulary.run_tree import descendants


def check_size(text: str | None, settings: Settings) -> None:
    if text is not None and len(text) > settings.max_input_chars:
        raise InputTooLarge(settings.max_input_chars)


def check_params(model: str | None, params: dict[str, Any]) -> None:
    """Knobs the run's provider does not take are a 422 now, when the model is already known."""
    if model is not None:
        try:
            check_params_for(parse_model(model).provider, params)
        except ValueError as exc:
            raise InvalidInput(f"params: {exc}") from None


def check_agent_name(agent: str | None, settings: Settings) -> None:
    if agent is not None:
        try:
            check_agent(agent, frozenset(settings.agents))
        except ValueError as exc:
            raise InvalidInput(f"agent: {exc}") from None


def check_chat_token_choices(
    caller: Caller, body: CreateRun, settings: Settings, session_user: str | None = None
) -> None:
    """A chat token is a browser's: it runs what the backend that issued it chose (the session's model
    and params) and waits for an active run, unless the operator lets browsers choose. Its runs are
    its session's end user's (`session_user`), always: naming another would queue runs as someone
    else, and escape one's own cap."""
    if caller.has_api_key:
        return
    if body.user is not None and body.user != session_user:
        raise Forbidden(
            "a chat token's runs are its session's end user's: it may not name another `user` (an API key may)"
        )
    chosen = {
        "model": body.model is not None,
        "params": body.params is not None and bool(body.params.given()),
        "interrupt": body.multitask in ("interrupt", "rollback"),
    }
    refused = [name for name, asked in chosen.items() if asked and name not in settings.chat_token_may_set]
    if refused:
        raise Forbidden(
            f"a chat token may not choose {', '.join(refused)}: the session's are used (an API key may; "
            "TOKENTAIL_CHAT_TOKEN_MAY_SET lets chat tokens)"
        )


def follow_up_choices(session: SessionRecord, body: CreateRun) -> tuple[str | None, dict[str, Any]]:
    """The model and params of a follow-up turn in `session`, or in a fork of it (which keeps them):
    the session's unless `body` overrides them; a knob the model's provider does not take is a 422."""
    model = body.model or session.model
    params = {**session.params, **(body.params.given() if body.params else {})}
    check_params(model, params)
    return model, params


async def queue_follow_up(
    store: SessionStore,
    runs: SessionWrites,
    settings: Settings,
    budget: RunBudget,
    caller: Caller,
    session_id: str,
    body: CreateRun,
    run_id: str | None = None,
    *,
    spent: bool = False,
    task_push: bool = False,
    agent: str | None = None,
) -> RunRecord:
    """A follow-up turn, from REST or a WebSocket: the session's model and params unless overridden.
    `run_id`: the id a request sent with an idempotency key gives it (else a new one). `spent`: the
    request spent its one run of the tenant's minute already, on the fork it made for this run
    (`fork_session`). `task_push`: the run is a task given push configs (`SessionWrites.queue_run`).
    `agent`: the run's agent, if not the session's (a LangGraph run names its assistant).
    With multitask `steer` and a run active, no run is queued: the input steers that run, and the
    record returned names it (its `queued_seq`: the steer's `steer.accepted`). It spends the tenant's
    run budget as a run does: the steer costs the model a turn."""
    check_size(body.input, settings)
    session = await store.get_session(session_id)
    check_chat_token_choices(caller, body, settings, session.user)
    model, params = follow_up_choices(session, body)
    if not spent:  # a steer queues no run, unless no run is active (then it queues one)
        await budget.spend(caller.tenant, queues=body.multitask != "steer" or session.active_run_id is None)
    run = RunRecord(
        run_id=run_id or new_run_id(),
        input=body.input,
        model=model,
        params=params,
        agent=agent or session.agent,
        user=body.user,
    )
    queued = await runs.queue_run(session_id, run, multitask=body.multitask, task_push=task_push)
    if queued.queued is Queued.STEERED:
        return run.model_copy(update={"run_id": queued.run_id, "queued_seq": queued.seq})
    return run


async def steer_active_run(
    runs: SessionWrites,
    settings: Settings,
    budget: RunBudget,
    tenant: str,
    session_id: str,
    body: SteerRequest,
    steer_id: str,
) -> SteerAccepted:
    """A steer for the session's active run (or for `body.run_id` only, if it is still active), from
    any route: stored before this returns (see `SessionWrites.steer`). It spends the tenant's run
    budget, as a follow-up with multitask `steer` does: the steer costs the model a turn."""
    check_size(body.input, settings)
    await budget.spend(tenant, queues=False)
    steered = await runs.steer(session_id, steer_id, body.input, body.run_id)
    return SteerAccepted(steer_id=steer_id, run_id=steered.run_id or "", status="accepted")


class RunCommands:
    """What a request that queues runs needs: who calls, and the store, limits and settings."""

    def __init__(
        self,
        caller: Caller,
        auth: Authenticator,
        store: SessionStore,
        runs: SessionWrites,
        settings: Settings,
        budget: RunBudget,
        webhooks: SessionWebhooks,
    ) -> None:
        self.caller, self.auth, self.store, self.runs = caller, auth, store, runs
        self.settings, self.budget, self.webhooks = settings, budget, webhooks


class ChatSent(NamedTuple):
    session_id: str  # the session the chat goes on in
    run: RunRecord  # the run queued; `steered`: the active run the message steered
    steered: bool  # (chat_while_running `steer`): `run.queued_seq` is then the steer's steer.accepted


class ChatTurns(RunCommands):
    """What a chat UI sends (useChat over HTTP or its socket, AG-UI): its chat id names a session of
    the caller's tenant, made on the first turn with the deployment's defaults."""

    async def session(self, chat_id: str) -> str:
        return await self.auth.chat_session(self.caller, chat_id, self.store)

    async def send(self, chat_id: str, session_id: str, chat: ClientChat, run_id: str | None = None) -> ChatSent:
        """A run with the chat's next message, in the session it goes on in: `session_id` (the chat's
        now), or a fork of it where the client's message list shows its conversation branching
        (gateway/commands/branching.py), which the chat goes on in from then on. One posted while a run
        is active (from another tab, or a UI that sends while it streams) waits in line behind it
        rather than being refused; or, with `chat_while_running` `steer`, steers it: the record
        returned is then the active run's, its `queued_seq` the steer's `steer.accepted`. `run_id`: the
        run's id, if the client's request names one (else a new one)."""
        self.caller.require_chat()
        run_id = run_id or new_run_id()
        try:
            session = await self.store.get_session(session_id)
        except SessionExpired:
            raise
        except SessionNotFound:
            first = await self.first_run(session_id, RunRecord(run_id=run_id, input=chat.text))
            return ChatSent(session_id, first, steered=False)
        point = branch_point(chat, session)
        if point is not None:
            check_size(chat.text, self.settings)
            # Named by the run it is made for: the same request sent twice at once makes one fork, one run.
            fork_id = idempotent_id("s_", self.caller.tenant, session_id, "fork for", run_id)
            fork = await fork_session(self.store, self.runs, self.settings, self.budget, session_id, point, fork_id)
            session_id = fork.session_id
            await self.runs.point_chat(await self.auth.chat_root(self.caller, chat_id, self.store), session_id)
        follow_up = CreateRun(input=chat.text, multitask="steer" if point is None and self.steers else "enqueue")
        args = (self.store, self.runs, self.settings, self.budget, self.caller, session_id, follow_up, run_id)
        run = await queue_follow_up(*args, spent=point is not None)  # (a fork spent the request's run)
        return ChatSent(session_id, run, steered=run.run_id != args[-1])

    @property
    def steers(self) -> bool:
        """Whether a message sent while the chat's run is active steers it (else it waits in line)."""
        return self.settings.chat_while_running == "steer"

    async def first_run(self, session_id: str, run: RunRecord, metadata: dict[str, Any] | None = None) -> RunRecord:
        """The chat's first run, in its session made now (with `metadata`)."""
        check_size(run.input, self.settings)
        await self.budget.spend(self.caller.tenant)
        tenant = self.caller.tenant
        webhook = await self.webhooks.url_for(tenant)
        session = SessionRecord(
            session_id=session_id, created_at=time.time(), tenant=tenant, metadata=metadata or {}, webhook=webhook
        )
        # Made here unless another request of the same new chat made it first: then this run joins it.
        await self.runs.queue_run(session_id, run, multitask="enqueue", create=session, if_missing=True)
        return run

    async def answer(self, session: SessionRecord, answers: dict[str, Any]) -> tuple[RunRecord, int]:
        """The chat's waiting run, answered with `answers` (by input id): one for each question it waits
        for (several may be open at once, and the chat's response goes on from all of them: its clients
        send them together, useChat once each approval has its response, AG-UI's resume addressing
        each interrupt); and the seq of the last `input.received` event. `session` as just read."""
        self.caller.require_chat()
        run = session.active_run
        # The questions of its tree (docs/subagents.md): its own, or its child runs' while it waits for them.
        tree = [] if run is None else [run, *descendants(session.runs, run.run_id)]
        asking = [waiting for waiting in tree if waiting.waiting_for]
        if run is None or not asking:
            raise InputNotPending(f"the chat's run waits for nothing: the answers sent are to {sorted(answers)}")
        if missing := [input_id for r in asking for input_id in r.waiting_for if input_id not in answers]:
            raise InvalidInput(f"the chat's run waits for answers to {missing!r} as well: send them together")
        seq = None
        for waiting in asking:
            to_it = {input_id: answers[input_id] for input_id in waiting.waiting_for}
            seq = await answer_all(self.runs, session.session_id, waiting, to_it) or seq
        if seq is None:
            raise InputNotPending(f"the chat's run no longer waits for {sorted(answers)!r}")
        # As it is now, answers given elsewhere meanwhile included: the stream that goes on from here
        # replays the run past every question answered.
        answered = await self.store.get_run(session.session_id, run.run_id)
        return answered or run, seq
