"""The Responses API's WebSocket mode through real gateway and worker processes: a worker killed -9
mid-response while the official Python SDK reads it on its socket."""

from pathlib import Path
from typing import Any

import httpx2
import pytest
from openai import AsyncOpenAI
from openai.lib.responses_websocket import AsyncResponsesWebSocketSession, ResponsesWebSocketLimits

from tests.e2e.conftest import Stack
from tests.integration.test_openai_responses import run_of
from tokentail.shared.vocabulary.response_ids import parse_response_id
from tokentail.worker.providers.scripted import scripted_tokens

pytestmark = pytest.mark.responses


KEY = "acme-key-0123456789abcdef"
PARAMS = {"tokens": 150}
LIMITS = ResponsesWebSocketLimits(
    max_lanes=4, max_events_per_lane=4096, max_events=4096, max_bytes_per_lane=1 << 24, max_bytes=1 << 24
)


async def test_a_worker_killed_mid_response_is_taken_over_and_the_socket_reads_one_answer(tmp_path: Path) -> None:
    stack = Stack(
        tmp_path,
        TOKENTAIL_API_KEYS=f"acme:{KEY}",
        TOKENTAIL_SECRET="e2e-" + "s" * 40,
        TOKENTAIL_LEASE_MS="1500",
        TOKENTAIL_AGENTS='{"held": "tests.support.gates:held"}',  # the scripted answer, held at its gate
    )
    try:
        url = stack.gateway()
        doomed = stack.worker()
        stack.wait_for_workers(1)
        client = AsyncOpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=30)
        seen: list[Any] = []
        async with (
            client.responses.connect() as connection,
            AsyncResponsesWebSocketSession(connection, limits=LIMITS) as session,
        ):
            lane = session.lane("crash")
            create: Any = {"type": "response.create", "model": "held", "input": "survive", "params": PARAMS}
            await lane.send(create)
            while seen[-1:] == [] or seen[-1].type != "response.completed":
                seen.append(await lane.recv())
                if seen[-1].type == "response.output_text.delta" and doomed.poll() is None:
                    doomed.kill()  # while the run waits at its gate
                    doomed.wait()
                    stack.worker()  # the one that takes the run over
                    stack.gates.release(run_of(seen[0].response.id))
            final = await lane.get_final_response()
        await client.close()
        assert [e.sequence_number for e in seen] == list(range(len(seen))), "no gap, no duplicate"
        text = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
        answer = "".join(scripted_tokens("survive", PARAMS["tokens"]))
        assert final.status == "completed" and text == final.output_text == answer
        # The run went on where it stopped (run.continued): one message item, continued, none incomplete.
        assert [e.item.status for e in seen if e.type == "response.output_item.done"] == ["completed"]
        parsed = parse_response_id(final.id)
        assert parsed is not None
        async with httpx2.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}) as rest:
            run = (await rest.get(f"/v1/sessions/{parsed[0]}")).json()["runs"][-1]
        assert run["attempt"] == 2, "the run was taken over"
    finally:
        stack.close()
