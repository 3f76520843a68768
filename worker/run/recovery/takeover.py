"""How a taken-over run goes on: decided before the new attempt claims it (start_run.lua appends the
decision as `run.continued`), from the run's record and what its agent and provider can do.

- A model-driven `Agent` goes on from its recorded steps (worker/run/agent_loop.py). The model turn the
  crash cut is continued from the text clients have when the provider can continue a partial answer
  (`Provider.continues`) and the turn had no reasoning yet; otherwise that turn alone restarts, and
  clients drop its text: the run keeps its events up to the turn's start.
- Your own agent function goes on when marked `@continues` (it runs again, with its record); one
  marked `continues(agent, redoes_after_last_step=True)` (the LangGraph adapter: from its last
  checkpoint) keeps the events up to its last step only, and redoes what followed.
- Anything else, and a run whose start the stream no longer holds, starts over (`run.retrying`).

No worker holds the run while this reads its record: the one that ran it lost its lease, so the
record cannot change until the new attempt's start_run.lua.
"""

import json

from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.events import EventType
from tokentail.shared.vocabulary.run_log import RunLog
from tokentail.worker.providers import Providers
from tokentail.worker.run.agents import Agent, AgentFunction, continuation_of, load_agent

TURN_STEP = "turn"  # the agent loop's step name for a model turn that called tools


async def plan_takeover(
    store: SessionStore, providers: Providers, settings: Settings, session_id: str, run_id: str
) -> RunLog | None:
    """For a run that a worker ran and lost, or a fork's run (`forked_at`), which goes on as if taken
    over at its fork's event: its record as it goes on (`last_seq`: the id up to which its events are
    kept), or None to start it over. None too for a run that is neither (start_run.lua ignores it)."""
    run = await store.get_run(session_id, run_id, steps=True)
    if run is None or (run.status != "running" and run.forked_at is None):
        return None
    try:
        agent = load_agent(run.agent, settings)
    except Exception:  # the attempt fails the run with this error; whether it goes on does not matter
        return None
    mode = continuation_of(agent)
    if mode is None:
        return None
    log = await store.run_log(session_id, run)
    if log is None:
        return None
    if mode == "last_step":  # up to its last step; with none, what it streamed is all redone
        keep = run.step_seq if run.step_seq is not None else (run.queued_seq or 1)
    else:
        model = run.model or (agent.model if isinstance(agent, Agent) else None) or settings.model
        keep = kept_until(agent, run.steps, log, await _continues(providers, model))
    return log.kept_until(keep)


async def _continues(providers: Providers, model: str) -> bool:
    """Whether the provider of `model` can continue a partial answer (`Provider.continues`)."""
    try:
        provider, _ = await providers.resolve(model)
    except Exception:  # the attempt fails the run with this error; whether it goes on does not matter
        return False
    return provider.continues


def kept_until(agent: Agent | AgentFunction, steps: dict[str, str], log: RunLog, continues: bool) -> int:
    """The id up to which the events of a run that goes on from its text are kept: all of them, but
    for an `Agent` whose provider cannot continue (`continues`), or whose cut turn had reasoning,
    those before the cut turn."""
    if not isinstance(agent, Agent):
        return log.last_seq
    turns = [json.loads(value) for key, value in steps.items() if key.startswith(TURN_STEP + "#")]
    before_cut, cut = log.cut(sum(len(turn["message"]["content"]) for turn in turns))
    if not cut or (continues and not any(event.type == EventType.REASONING_DELTA for event in cut)):
        return log.last_seq
    return before_cut
