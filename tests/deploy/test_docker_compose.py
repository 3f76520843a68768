"""docker-compose.yml on a real Docker engine: the image built from deploy/Dockerfile, `docker compose up
--wait --scale worker=3`, and every request through the nginx container, as a user's would be.

Skipped, with the reason, where no Docker Engine 25+ with Compose v2 answers (DOCKER_HOST and the docker
CLI on PATH); .ci/run provisions one where it can and then sets TOKENTAIL_DOCKER_REQUIRED, which turns the
skip into a failure. The workers stream at most two runs each here (TOKENTAIL_WORKER_CONCURRENCY=2), so
where runs go is decided by free slots, not by which worker polls first."""

import asyncio
import os
import secrets
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from tests.clients.sse_client import read_events
from tests.deploy.docker_stack import API_KEY, REQUIRED_ENV, TENANT, DockerCompose, handed_over, unavailable
from tests.support.waiting import eventually, scaled
from tokentail.worker.providers.scripted import scripted_tokens

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]  # the first test pays for the image build

Event = tuple[int | None, str, dict[str, Any]]
CONCURRENCY = 2
TERMINAL = {"run.completed", "run.failed", "run.cancelled"}
HELD_TOKENS = 100_000  # over an hour at 25 a second: such a run ends when it is cancelled
HELD_ANSWER = "".join(scripted_tokens("compose", HELD_TOKENS))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerCompose]:
    reason = unavailable()
    if reason is not None:
        if os.environ.get(REQUIRED_ENV):
            pytest.fail(f"{REQUIRED_ENV} is set but {reason}")
        pytest.skip(reason)
    settings = {
        "TOKENTAIL_API_KEYS": f"{TENANT}:{API_KEY}",
        "TOKENTAIL_SECRET": secrets.token_hex(32),
        "TOKENTAIL_WORKER_CONCURRENCY": str(CONCURRENCY),
        "TOKENTAIL_LOG_LEVEL": "info",  # the workers' "run ... started" lines say which container runs what
    }
    compose = DockerCompose(tmp_path_factory.mktemp("docker-compose"), settings)
    try:
        compose.build()
        compose.scale(3)
        yield compose
    finally:
        compose.down()


def _client(stack: DockerCompose, key: str | None = API_KEY) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx2.AsyncClient(base_url=stack.public_url(), headers=headers, timeout=30)


async def _create(client: httpx2.AsyncClient, tokens: int, per_second: int) -> dict[str, Any]:
    params = {"tokens": tokens, "tokens_per_second": per_second}
    response = await client.post("/v1/sessions", json={"input": "compose", "model": "scripted", "params": params})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _cancel(client: httpx2.AsyncClient, session_id: str, run_id: str) -> None:
    response = await client.post(f"/v1/sessions/{session_id}/cancel", json={"run_id": run_id})
    assert response.status_code == 202, response.text


def _assert_whole(events: list[Event], takeovers: int, ended: str = "run.completed") -> None:
    """Ids 1..n with no gap or duplicate, one run that `ended` after `takeovers` takeovers, each going on
    where it stopped (`run.continued`, nothing dropped), and its text the output it completed with (or,
    cancelled, the start of its scripted answer)."""
    ids = [event_id for event_id, _, _ in events if event_id is not None]
    assert len(ids) == len(events), "a gap frame: the stream skipped events"
    assert ids == list(range(1, len(ids) + 1)), f"ids must be 1..n with no gap or duplicate: {ids}"
    kinds = [kind for _, kind, _ in events]
    assert kinds[-1] == ended, kinds[-3:]
    assert "run.retrying" not in kinds and kinds.count("run.started") == 1, kinds
    continued = [(ids[i], data) for i, (_, kind, data) in enumerate(events) if kind == "run.continued"]
    assert len(continued) == takeovers, kinds
    assert all(data["from_event_id"] == event_id - 1 for event_id, data in continued), "nothing dropped"
    text = "".join(data["text"] for _, kind, data in events if kind == "message.delta")
    assert text and text == (events[-1][2]["output"] if ended == "run.completed" else HELD_ANSWER[: len(text)])


class Follower:
    """Follows one session's stream until its run ends, resuming with Last-Event-ID if a connection breaks."""

    def __init__(self, client: httpx2.AsyncClient, url: str) -> None:
        self.client, self.url = client, url
        self.events: list[Event] = []

    def deltas(self) -> int:
        return sum(kind == "message.delta" for _, kind, _ in self.events)

    def goes_on_after_takeover(self) -> bool:
        kinds = [kind for _, kind, _ in self.events]
        return "run.continued" in kinds and "message.delta" in kinds[kinds.index("run.continued") :]

    def ended(self) -> bool:
        return bool(self.events) and self.events[-1][1] in TERMINAL

    async def follow(self) -> list[Event]:
        for _ in range(20):
            last = self.events[-1][0] if self.events else None
            try:
                part = await read_events(self.client, self.url, last_event_id=last, on_event=self.events.append)
            except httpx2.TransportError:
                continue
            assert part.status in (200, 204), part.status
            if part.status == 204 or self.ended():
                return self.events
        raise AssertionError(f"{self.url}: the run did not end within 20 connections")


async def test_api_calls_need_a_key(stack: DockerCompose) -> None:
    async with _client(stack, key=None) as anonymous, _client(stack, key="not-" + API_KEY) as wrong:
        for client in (anonymous, wrong):
            response = await client.post("/v1/sessions", json={"input": "hello", "model": "scripted"})
            assert response.status_code == 401, response.text
        async with _client(stack) as client:
            created = await _create(client, tokens=5, per_second=0)
        assert (await read_events(anonymous, created["events_url"])).status == 401
        assert (await anonymous.get(f"/v1/sessions/{created['session_id']}")).status_code == 401


async def test_a_dropped_stream_resumes_with_last_event_id(stack: DockerCompose) -> None:
    async with _client(stack) as client:
        created = await _create(client, tokens=200, per_second=40)  # about 5 s of deltas
    url = created["events_url"]
    assert url.startswith(stack.public_url()), "nginx passes on the Host clients used"
    # Read with the session's stream token, as a browser would (the API key stays on the server side).
    async with _client(stack, key=created["stream_token"]) as browser:
        first = await read_events(browser, url, limit=10)  # then the connection is dropped
        assert first.status == 200 and first.ids == list(range(1, 11))
        assert not {kind for _, kind, _ in first.events} & TERMINAL, "the drop must come while the run streams"
        rest = await read_events(browser, url, last_event_id=first.ids[-1])
        assert rest.status == 200 and rest.ids[0] == 11
        _assert_whole(first.events + rest.events, takeovers=0)
        assert (await read_events(browser, url, last_event_id=rest.ids[-1])).status == 204


async def test_a_killed_worker_s_run_completes_on_another(stack: DockerCompose) -> None:
    await asyncio.to_thread(stack.scale, 3)
    workers = await asyncio.to_thread(stack.containers, "worker")
    assert len(workers) == 3
    async with _client(stack) as client:
        created = await _create(client, tokens=400, per_second=25)  # about 16 s
        run_id = created["run_id"]
        follower = Follower(client, created["events_url"])
        following = asyncio.create_task(follower.follow())
        first = (await asyncio.to_thread(stack.wait_started, [run_id], workers))[run_id]
        assert first.attempt == 1
        await eventually(lambda: follower.deltas() >= 5, within=30, what="five deltas streamed")
        await asyncio.to_thread(stack.kill, first.container)  # SIGKILL: no hand-over, the lease runs out
        events = await asyncio.wait_for(following, scaled(120))
    _assert_whole(events, takeovers=1)
    (continued,) = [data for _, kind, data in events if kind == "run.continued"]
    assert continued["attempt"] == 2
    starts = (await asyncio.to_thread(stack.starts, workers))[run_id]
    assert [start.attempt for start in starts] == [1, 2], starts
    assert starts[1].container != first.container and starts[1].container in workers
    assert await asyncio.to_thread(stack.state, first.container) == "exited", "the killed worker came back"


async def test_scaling_workers_up_and_down_with_runs_in_flight(stack: DockerCompose) -> None:
    await asyncio.to_thread(stack.scale, 3)  # the worker killed above comes back
    before = await asyncio.to_thread(stack.containers, "worker")
    assert len(before) == 3
    slots = 3 * CONCURRENCY
    async with _client(stack) as client:
        # Runs that end when the test cancels them, never by their length: scaling a busy machine's
        # containers takes what it takes, and every run must still be in flight when it is done.
        created = [await _create(client, tokens=HELD_TOKENS, per_second=25) for _ in range(slots + 4)]
        runs = [session["run_id"] for session in created]
        followers = {
            run_id: Follower(client, session["events_url"]) for run_id, session in zip(runs, created, strict=True)
        }
        following = [asyncio.create_task(follower.follow()) for follower in followers.values()]
        # Every slot of the three workers taken: the last four runs wait in the queue.
        await asyncio.to_thread(stack.wait_started, runs, before, at_least=slots)

        await asyncio.to_thread(stack.scale, 5)
        grown = await asyncio.to_thread(stack.containers, "worker")
        added = set(grown) - set(before)
        assert set(before) <= set(grown) and len(added) == 2, "scaling up must leave the running workers alone"
        started = await asyncio.to_thread(stack.wait_started, runs, grown)
        assert {start.container for start in started.values()} & added, "the added workers took no queued run"

        # Down to two, with every run in flight: the workers removed hand their runs over as they stop.
        watching = {container: stack.follow_logs(container) for container in grown}
        await asyncio.to_thread(stack.scale, 2)
        kept = await asyncio.to_thread(stack.containers, "worker")
        removed = set(grown) - set(kept)
        assert set(kept) <= set(grown) and len(kept) == 2 and len(removed) == 3
        logs = {c: await asyncio.to_thread(watch.lines, c in removed) for c, watch in watching.items()}
        handed = set().union(*(handed_over(logs[container]) for container in removed))
        assert handed, "the removed workers handed no run over"

        # The runs the workers left kept are cancelled, which frees their slots; then each run handed
        # over, once it goes on from where it stopped on a worker left, is cancelled in its turn.
        for run_id in set(runs) - handed:
            await _cancel(client, created[runs.index(run_id)]["session_id"], run_id)
        waiting = set(handed)
        while waiting:
            going_on = await eventually(
                lambda: {run_id for run_id in waiting if followers[run_id].goes_on_after_takeover()},
                within=120,
                what=f"a run of {sorted(waiting)} going on after its takeover",
            )
            assert going_on
            for run_id in going_on:
                await _cancel(client, created[runs.index(run_id)]["session_id"], run_id)
            waiting.difference_update(going_on)
        results = await asyncio.wait_for(asyncio.gather(*following), scaled(240))

    for run_id, events in zip(runs, results, strict=True):
        _assert_whole(events, takeovers=int(run_id in handed), ended="run.cancelled")
    final = await asyncio.to_thread(stack.starts, kept)
    for run_id in handed:  # each taken over, as its second attempt, by a worker that is left
        assert [start.attempt for start in final[run_id]] == [2], final.get(run_id)
