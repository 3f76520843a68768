"""What asking for a run does, from REST or a WebSocket: check the request, spend the tenant's run
budget, and queue the run."""

from typing import Any

from gateway.auth import Caller
from gateway.ids import new_run_id
from gateway.limits import RunBudget
from gateway.schemas import CreateRun
from shared.catalog import check_agent, parse_model
from shared.errors import InputTooLarge, InvalidInput
from shared.lifecycle import RunLifecycle
from shared.params import check_params_for
from shared.records import RunRecord
from shared.settings import Settings
from shared.store import SessionStore


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


async def queue_follow_up(
    store: SessionStore,
    runs: RunLifecycle,
    settings: Settings,
    budget: RunBudget,
    caller: Caller,
    session_id: str,
    body: CreateRun,
) -> RunRecord:
    """A follow-up turn, from REST or a WebSocket: the session's model and params unless overridden."""
    check_size(body.input, settings)
    session = await store.get_session(session_id)
    model = body.model or session.model
    params = {**session.params, **(body.params.given() if body.params else {})}
    check_params(model, params)
    await budget.spend(caller.tenant)
    run = RunRecord(run_id=new_run_id(), input=body.input, model=model, params=params, agent=session.agent)
    await runs.queue_run(session_id, run, multitask=body.multitask)
    return run
