"""Steers (docs/steering.md) with real processes and the fake OpenAI server, which sees every model
request: a steer accepted by a gateway killed right after, for a run whose worker is killed -9
before it took the steer in, reaches the model once."""

import httpx2

from tests.e2e.conftest import Stack
from tests.e2e.fake_llm_server import API_KEY, REQUESTS
from tests.e2e.watcher import killed_in_second_turn

STEER = "Answer in French, please."


async def test_a_steer_outlives_its_gateway_and_the_worker_it_reached_and_the_model_gets_it_once(
    stack: Stack, llm_url: str
) -> None:
    stack.env |= {"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": f"{llm_url}/v1", "TOKENTAIL_LEASE_MS": "2000"}
    steering = stack.gateway()
    accepted: dict[str, str] = {}

    async def steer_then_kill_its_gateway(session_id: str) -> None:
        async with httpx2.AsyncClient(timeout=30) as client:
            answer = await client.post(f"{steering}/v1/sessions/{session_id}/steer", json={"input": STEER})
        assert answer.status_code == 202, answer.text
        accepted.update(answer.json())
        stack.gateways[steering].kill()  # -9 the moment it answered: the steer is Redis's already

    body = {"input": "what time is it, slowly?", "model": "openai:gpt-test"}
    # The worker is killed while the model's answer is held mid-text: it was told of the steer, and
    # had not taken it in (no text came for it to cut at).
    watcher = await killed_in_second_turn(stack, stack.gateway(), body, before_kill=steer_then_kill_its_gateway)
    seen = watcher.seen
    kinds = [kind for _, kind, _ in seen.events]
    assert kinds[-1] == "run.completed", kinds
    assert "run.continued" in kinds and kinds.count("steer.accepted") == 1 and kinds.count("steer.applied") == 1
    (applied,) = seen.of("steer.applied")
    assert applied == {"run_id": accepted["run_id"], "steer_id": accepted["steer_id"]}
    assert kinds.index("run.continued") < kinds.index("steer.applied"), "applied by the takeover, not before"
    steered = [request for request in REQUESTS if any(m.get("content") == STEER for m in request["messages"])]
    assert len(steered) == 1, "the model was given the steer once"
    assert steered[0]["messages"][-1] == {"role": "user", "content": STEER}
    assert seen.events[-1][2]["output"].endswith(f"You said: {STEER}")
    assert seen.ids == list(range(1, len(seen.ids) + 1))  # every id once, none missing
