"""kill -9 at the worst instants of a run, with real worker processes: N runs at each instant, on a
worker that is killed while a second one waits. The built-in agent loop with a `calculator` that
counts its runs (tests/agents/counting_agents.py): every run completes, its clients' text is the
uninterrupted answer with nothing repeated or lost, and a tool whose result was recorded never runs
again (one cut mid-call runs again, with the same call id). The figures are printed (`pytest -s`),
not asserted against a clock: machines are noisy."""

import asyncio
import json
import signal
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.agents.counting_agents import own_answer
from tests.e2e.conftest import Stack
from tests.e2e.watcher import Watcher
from tests.support.waiting import eventually, scaled
from tokentail.worker.providers.scripted import scripted_tokens

RUNS = 30
AGENTS = json.dumps(
    {
        "counting": "tests.agents.counting_agents:COUNTING",
        "approving": "tests.agents.counting_agents:APPROVING",
        "stepping": "tests.agents.counting_agents:stepping_held",
    }
)
CALCULATED = 'Let me calculate that. The calculator says "42".'
STORY = {"tokens": 400, "tokens_per_second": 40}  # 10 s: a busy machine still kills it mid-text


@dataclass
class Instant:
    agent: str
    question: str
    params: dict[str, Any]
    reached: Callable[[Watcher], bool]  # the run is at the instant, as its client sees it
    answer: str
    tool_seconds: float = 0.0
    runs_per_call: int = 1  # how many times the tool runs for each call id
    asks: bool = False
    held: bool = False  # the agent waits at its gate (tests/support/gates.py) at the instant, until after the kill
    figures: dict[str, Any] = field(default_factory=dict)


INSTANTS = {
    "during the model's text": Instant(
        "counting",
        "tell me about streams",
        STORY,
        lambda watcher: watcher.deltas() >= 5,
        "".join(scripted_tokens("tell me about streams", STORY["tokens"])),
        runs_per_call=0,  # no tool
    ),
    # The model takes 6 s to its first token: the kill lands after the tool's result was recorded
    # (and shown) and before the next model call streams anything.
    "between a tool's result and the next model call": Instant(
        "counting",
        "what is 6 * 7?",
        {"first_token_seconds": 6, "tokens_per_second": 40},
        lambda watcher: "tool.completed" in watcher.arrival,
        CALCULATED,
    ),
    # The tool counts its run, then hangs: killed meanwhile, it runs again with the same call id
    # (and answers at once: the second run of a call id does not hang).
    "during a tool": Instant(
        "counting",
        "what is 6 * 7?",
        {"tokens_per_second": 40},
        lambda watcher: "tool.started" in watcher.arrival,
        CALCULATED,
        tool_seconds=60.0,
        runs_per_call=2,
    ),
    # An agent of your own, marked @continues: its step is replayed, its text goes on. It waits at
    # its gate mid-text, so however long the second worker takes to start, every run is still there.
    "during your own agent's text": Instant(
        "stepping",
        "go",
        {},
        lambda watcher: watcher.deltas() >= 1,
        own_answer(42),
        held=True,
    ),
    "during a question's wait": Instant(
        "approving",
        "what is 6 * 7?",
        {"tokens_per_second": 40},
        lambda watcher: "input.required" in watcher.arrival,
        CALCULATED,
        asks=True,
    ),
}


@pytest.mark.parametrize("name", list(INSTANTS))
async def test_a_worker_killed_at_the_worst_instant_loses_nothing_and_repeats_no_recorded_tool(
    stack: Stack, tmp_path: Path, name: str
) -> None:
    instant = INSTANTS[name]
    tool_runs = tmp_path / "tool-runs"
    tool_runs.touch()
    stack.env |= {
        "TOKENTAIL_AGENTS": AGENTS,
        "TOKENTAIL_LEASE_MS": "2000",
        "TOKENTAIL_TEST_TOOL_RUNS": str(tool_runs),
        "TOKENTAIL_TEST_TOOL_SECONDS": str(instant.tool_seconds),
    }
    url = stack.gateway()
    doomed = stack.worker()
    await asyncio.to_thread(stack.wait_for_workers, 1)
    # The one that takes over has started (seconds on a busy machine: started after the runs, it
    # delayed the kill past the instant), and is held still (SIGSTOP) until the kill, so it takes
    # none of the runs first.
    taking_over = stack.worker()
    await asyncio.to_thread(stack.wait_for_workers, 2)
    taking_over.send_signal(signal.SIGSTOP)
    async with httpx2.AsyncClient(base_url=url, timeout=60, limits=httpx2.Limits(max_connections=None)) as client:
        try:
            # Each run its own expression, so its own call id (the scripted model's ids come from it).
            bodies = [
                {"input": instant.question.replace("7", str(7 + i)), "agent": instant.agent, "params": instant.params}
                for i in range(RUNS)
            ]
            # At once, so the runs reach the instant close together.
            made = [
                response.json()
                for response in await asyncio.gather(*(client.post("/v1/sessions", json=body) for body in bodies))
            ]
            watchers = [Watcher(client, created["events_url"]) for created in made]
            following = [asyncio.create_task(watcher.follow()) for watcher in watchers]
            await eventually(lambda: all(instant.reached(watcher) for watcher in watchers), within=60, interval=0.02)
            if instant.held:
                await eventually(lambda: all(stack.gates.reached(created["run_id"]) for created in made), within=60)
            doomed.send_signal(signal.SIGKILL)
            struck = time.monotonic()
        finally:
            taking_over.send_signal(signal.SIGCONT)
        stack.gates.release_all()  # for the attempts that take the runs over
        if instant.asks:  # the runs wait with no worker: answered now, through the REST API
            for created, watcher in zip(made, watchers, strict=True):
                asked = watcher.seen.of("input.required")[0]
                answer = {"input_id": asked["input_id"], "answer": {"approved": True}}
                path = f"/v1/sessions/{created['session_id']}/runs/{created['run_id']}/input"
                assert (await client.post(path, json=answer)).status_code == 202
        await asyncio.wait_for(asyncio.gather(*following), scaled(120))

    completed = repeated = lost = 0
    first_new_token: list[float] = []
    for watcher in watchers:
        seen = watcher.seen
        assert seen.ids == list(range(1, len(seen.ids) + 1)), "contiguous ids, no duplicate"
        kinds = [kind for _, kind, _ in seen.events]
        completed += kinds[-1] == "run.completed"
        assert "run.retrying" not in kinds, "the run went on; it did not start over"
        assert kinds.count("run.continued") == (0 if instant.asks else 1)
        text = watcher.all_text()  # every delta, none dropped: the run continued exactly
        repeated += max(0, len(text) - len(instant.answer))
        lost += max(0, len(instant.answer) - len(text))
        assert text == watcher.answer() == seen.events[-1][2]["output"] == instant.answer
        _check_usage(seen.events[-1][2]["usage"], name, instant)
        moment = watcher.arrival.get("first delta after run.continued") or _first_delta_after(watcher, "input.received")
        first_new_token.append(moment - struck)
    runs_per_call = Counter(Counter(tool_runs.read_text().split()).values())
    assert completed == RUNS
    assert runs_per_call == ({instant.runs_per_call: RUNS} if instant.runs_per_call else {})
    print(  # noqa: T201
        f"\n{name}: {completed}/{RUNS} runs completed; tool runs per call id {dict(runs_per_call) or 'none'}; "
        f"characters repeated {repeated}, lost {lost}; kill -> first new token at the client "
        f"p50 {statistics.median(first_new_token):.2f} s, max {max(first_new_token):.2f} s"
    )


def _check_usage(usage: dict[str, Any], name: str, instant: Instant) -> None:
    """The run's usage counts every attempt's model calls, the one the kill cut too (estimated)."""
    if instant.agent == "stepping":  # your own agent: it reports no usage
        return
    if instant.asks:  # no takeover: the run resumed after the answer as the same attempt
        assert "attempts" not in usage and usage["output_tokens"] > 0
        return
    attempts = usage["attempts"]
    assert [attempt["attempt"] for attempt in attempts] == [1, 2]
    assert usage["output_tokens"] == sum(attempt["output_tokens"] for attempt in attempts)
    assert usage["input_tokens"] == sum(attempt["input_tokens"] for attempt in attempts)
    cut = name == "during the model's text"  # the kill cut a model call: its output is estimated
    assert (attempts[0].get("estimated_output_tokens", 0) > 0) == cut


def _first_delta_after(watcher: Watcher, event: str) -> float:
    """When the first text after `event` arrived (the watcher keeps each event's arrival)."""
    at = watcher.arrival[event]
    return min(moment for moment in watcher.delta_arrivals if moment >= at)
