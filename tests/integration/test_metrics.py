"""The metrics move when events flow: read from the gateway's and the worker's /metrics."""

import asyncio
import math
from collections.abc import Callable
from typing import Any

import httpx2
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from tests.clients.sse_client import read_events
from tests.fixtures.stack import Gateway
from tests.support.waiting import eventually, scaled
from tokentail.cli import main
from tokentail.redis_server import free_port
from tokentail.worker.providers.scripted import STEP_TOKENS, scripted_tokens


async def scrape(http: httpx2.AsyncClient, url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await http.get(url)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_move_as_a_run_streams_and_a_client_resumes(
    gateway: Gateway, start_worker: Callable[..., Any]
) -> None:
    port = free_port()
    await start_worker(probe_address=("127.0.0.1", port))
    worker_url = f"http://127.0.0.1:{port}"
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as http:
        # The probe server starts with the worker's first poll.
        before_worker = await eventually(
            lambda: scrape(http, f"{worker_url}/metrics"), interval=0.05, ignoring=(httpx2.TransportError,)
        )
        before = await scrape(http, "/metrics")
        body = {"input": "hello there", "model": "scripted", "params": {"tokens": 30, "tokens_per_second": 0}}
        created = (await http.post("/v1/sessions", json=body)).json()
        received = await read_events(http, created["events_url"])
        assert received.events[-1][1] == "run.completed"
        resumed = await read_events(http, created["events_url"], last_event_id=2)
        assert resumed.ids[0] == 3
        after = await scrape(http, "/metrics")
        after_worker = await scrape(http, f"{worker_url}/metrics")

        def moved(samples_before: Any, samples_after: Any, name: str, **labels: str) -> float:
            return value(samples_after, name, **labels) - value(samples_before, name, **labels)

        sent = len(received.ids) + len(resumed.ids)
        assert moved(before, after, "tokentail_events_sent_total", transport="sse") == sent
        assert moved(before, after, "tokentail_connections_opened_total", transport="sse") == 2
        assert moved(before, after, "tokentail_resumes_total", transport="sse") == 1
        assert moved(before, after, "tokentail_resumed_events_total", transport="sse") == len(resumed.ids)
        assert value(after, "tokentail_connections", transport="sse") == value(
            before, "tokentail_connections", transport="sse"
        )

        w0, w1 = before_worker, after_worker
        assert moved(w0, w1, "tokentail_runs_total", outcome="completed") == 1
        # Text chunks: the offline model, unpaced, gives its tokens STEP_TOKENS to a chunk.
        chunks = math.ceil(len(scripted_tokens("hello there", 30)) / STEP_TOKENS)
        assert moved(w0, w1, "tokentail_tokens_total", provider="scripted") == chunks
        appended = sum(
            moved(w0, w1, "tokentail_events_appended_total", event=e)
            for e in ("message.delta", "run.started", "run.completed")
        )
        assert appended == len(received.ids) - 1  # all but run.queued, which the gateway appends
        assert moved(w0, w1, "tokentail_queue_wait_seconds_count") == 1
        assert moved(w0, w1, "tokentail_tenant_line_wait_seconds_count") == 1  # a first start, in its tenant's turn
        assert moved(w0, w1, "tokentail_time_to_first_token_seconds_count", provider="scripted") == 1
        assert value(w1, "tokentail_active_runs") == 0

        # OpenMetrics when asked, as on the gateway: the format with exemplars (shared/plumbing/prometheus.py).
        open_metrics = await http.get(f"{worker_url}/metrics", headers={"Accept": "application/openmetrics-text"})
        assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
        assert open_metrics.text.endswith("# EOF\n")
        assert (await http.get(f"{worker_url}/healthz")).json() == {"status": "ok"}
        assert (await http.get(f"{worker_url}/readyz")).json() == {"status": "ready"}


async def test_gaps_and_provider_errors_are_counted(gateway: Gateway, worker: Any) -> None:
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as http:
        before = await scrape(http, "/metrics")
        body = {"input": "x", "model": "openai-compatible:nothing"}  # no base URL configured: the run fails
        created = (await http.post("/v1/sessions", json=body)).json()
        received = await read_events(http, created["events_url"])
        assert received.events[-1][1] == "run.failed"
        await read_events(http, created["events_url"], last_event_id=99)  # ahead of the stream: a gap
        after = await scrape(http, "/metrics")
        assert (
            value(after, "tokentail_gaps_total", reason="unknown_id")
            - value(before, "tokentail_gaps_total", reason="unknown_id")
            == 1
        )
        assert (
            value(after, "tokentail_runs_total", outcome="failed")
            - value(before, "tokentail_runs_total", outcome="failed")
            == 1
        )


async def test_healthcheck_command_exits_0_when_healthy_and_1_when_not(gateway: Gateway) -> None:
    runner = CliRunner()
    wait = ["--timeout", str(scaled(10))]  # its 2 s default is for a quiet container, not a busy test box
    healthy = await asyncio.to_thread(runner.invoke, main, ["healthcheck", *wait, f"{gateway.url}/healthz"])
    assert healthy.exit_code == 0, healthy.output
    down = await asyncio.to_thread(runner.invoke, main, ["healthcheck", f"http://127.0.0.1:{free_port()}/healthz"])
    assert down.exit_code == 1 and "unhealthy" in down.output
    missing = await asyncio.to_thread(runner.invoke, main, ["healthcheck", *wait, f"{gateway.url}/nothing-here"])
    assert missing.exit_code == 1
