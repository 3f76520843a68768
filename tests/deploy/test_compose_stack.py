"""docker-compose.yml's services as local processes (tests/deploy/stack.py): a real redis-server, two
gateways and two workers from the services' own commands, and Debian's nginx with deploy/nginx.conf in
front. Every request here goes through nginx, as a user's would."""

import asyncio
import json
import signal
import time
from typing import Any

import httpx2
import websockets
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.clients.sse_client import read_events
from tests.deploy.stack import K8S_DIR, LocalCompose, Replica, dashboard_metrics
from tests.support.waiting import eventually, scaled

Event = tuple[int | None, str, dict[str, Any]]


def _public(compose: LocalCompose) -> str:
    return compose.replicas["nginx"][0].url


def _assert_whole(events: list[Event]) -> None:
    ids = [event_id for event_id, _, _ in events if event_id is not None]
    assert ids == list(range(1, len(ids) + 1)), "ids must be contiguous, with no duplicate"
    kinds = [kind for _, kind, _ in events]
    assert kinds[-1] == "run.completed" and "run.retrying" not in kinds
    text = "".join(data["text"] for _, kind, data in events if kind == "message.delta")
    assert text == events[-1][2]["output"]


async def _create(client: httpx2.AsyncClient, tokens: int, per_second: int) -> dict[str, Any]:
    params = {"tokens": tokens, "tokens_per_second": per_second}
    response = await client.post("/v1/sessions", json={"input": "deploy", "model": "scripted", "params": params})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_the_first_delta_arrives_long_before_the_run_ends(compose: LocalCompose) -> None:
    """Deltas reach the client through nginx as the worker writes them, not in bursts at the end. This catches
    whatever holds a stream back on the way (gzip of a buffered response, a cache); `proxy_buffering off` itself
    is checked in test_deploy_files.py, since nginx passes data on to a fast reader even with buffering on."""
    public = _public(compose)
    deltas: list[float] = []
    arrivals: dict[str, float] = {}

    def arrived(event: Event) -> None:
        now = time.monotonic()
        arrivals.setdefault(event[1], now)
        if event[1] == "message.delta":
            deltas.append(now)

    async with httpx2.AsyncClient(base_url=public, timeout=30) as client:
        posted = time.monotonic()
        created = await _create(client, tokens=200, per_second=50)  # about 4 s of deltas
        assert created["events_url"].startswith(public), "nginx passes the Host clients used"
        received = await read_events(client, created["events_url"], on_event=arrived)
    assert received.status == 200
    _assert_whole(received.events)
    first_delta, run_end = arrivals["message.delta"] - posted, arrivals["run.completed"] - posted
    assert run_end > 3.0, f"the run took {run_end:.2f} s: too short to tell streaming from buffering"
    assert first_delta < 1.5 and first_delta < run_end / 3, f"first delta after {first_delta:.2f} s of {run_end:.2f} s"
    halfway = posted + run_end / 2
    assert sum(t < halfway for t in deltas) >= 10, "deltas came in a burst, not as they were written"


async def test_resuming_through_nginx_with_last_event_id(compose: LocalCompose) -> None:
    async with httpx2.AsyncClient(base_url=_public(compose), timeout=30) as client:
        created = await _create(client, tokens=30, per_second=300)
        url = created["events_url"]
        everything = await read_events(client, url)
        _assert_whole(everything.events)
        for via in ("header", "query"):
            rest = await read_events(client, url, last_event_id=5, via=via)
            assert rest.status == 200 and rest.events == everything.events[5:], via
        assert (await read_events(client, url, last_event_id=everything.ids[-1])).status == 204


async def test_websockets_pass_through_nginx(compose: LocalCompose) -> None:
    async with httpx2.AsyncClient(base_url=_public(compose), timeout=30) as client:
        created = await _create(client, tokens=20, per_second=200)
    socket_url = _public(compose).replace("http://", "ws://") + f"/v1/sessions/{created['session_id']}/ws"

    async def until_completed(ws: websockets.ClientConnection) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while not messages or messages[-1].get("event") != "run.completed":
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), scaled(20))))
        return messages

    async with websockets.connect(socket_url) as ws:
        first = await until_completed(ws)
        await ws.send(json.dumps({"type": "run", "input": "and again"}))
        second = await until_completed(ws)
    assert first[0]["id"] == 1
    assert any(message.get("type") == "ack" for message in second)
    ids = [message["id"] for message in first + second if "id" in message]
    assert ids == list(range(1, len(ids) + 1))


def _exposed(text: str) -> set[str]:
    """Every sample name the families in a /metrics page can have (declared ones too, before any sample)."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "summary": ["_sum", "_count"]}
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in suffixes.get(family.type, [""]))
    return names


async def test_with_auth_off_no_client_through_nginx_is_this_machine_whatever_it_writes(compose: LocalCompose) -> None:
    """Issue 84: with compose's settings (auth off, nginx in front), a client that wrote `X-Forwarded-For:
    127.0.0.1` was the console's operator of every tenant. Whatever a client writes, a request through the
    proxy is not this machine; the gateway itself, reached on loopback with no proxy, is."""
    forged = [{}, {"X-Forwarded-For": "127.0.0.1"}, {"X-Real-IP": "127.0.0.1"}, {"Forwarded": "for=127.0.0.1"}]
    async with httpx2.AsyncClient(base_url=_public(compose), timeout=30) as client:
        for headers in forged:
            for path in ("/v1/admin/whoami", "/v1/admin/runs"):
                response = await client.get(path, headers=headers)
                assert response.status_code == 403, (path, headers, response.text)
    async with httpx2.AsyncClient(base_url=compose.replicas["gateway"][0].url, timeout=30) as client:
        assert (await client.get("/v1/admin/whoami")).json()["who"] == "local"


async def test_metrics_go_to_prometheus_and_not_through_the_proxy(compose: LocalCompose) -> None:
    async with httpx2.AsyncClient(timeout=10) as client:
        for path in ("/metrics", "/metrics/", "/metrics?format=text"):
            assert (await client.get(_public(compose) + path)).status_code == 403, path
        exposed: set[str] = set()
        scraped: list[Replica] = [*compose.replicas["gateway"], *compose.replicas["worker"]]
        for replica in scraped:  # what Prometheus scrapes: each replica directly, at its own port
            response = await client.get(f"{replica.url}/metrics")
            assert response.status_code == 200, replica.name
            assert response.headers["content-type"].startswith("text/plain")
            exposed |= _exposed(response.text)
    queried = await asyncio.to_thread(dashboard_metrics)
    assert queried, "the dashboard queries no tokentail metric"
    assert queried <= exposed, f"the dashboard queries metrics nobody exposes: {sorted(queried - exposed)}"


def _established(port: int) -> int:
    """TCP connections accepted on a local port and still open (Linux's /proc/net/tcp)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                local, state = row.split()[1], row.split()[3]
                count += state == "01" and int(local.rsplit(":", 1)[1], 16) == port
    return count


class Follower:
    """Follows a session's stream as the browser client does: after a stream ends or breaks, it reconnects
    with the last id it saw; after a 5xx it waits a moment; on 204 it stops."""

    def __init__(self, client: httpx2.AsyncClient, url: str) -> None:
        self.client, self.url = client, url
        self.events: list[Event] = []
        self.arrivals: list[float] = []
        self.connections = 0

    def deltas(self) -> int:
        return sum(kind == "message.delta" for _, kind, _ in self.events)

    def _arrived(self, event: Event) -> None:
        self.events.append(event)
        self.arrivals.append(time.monotonic())

    async def follow(self) -> None:
        while self.connections < 20:
            self.connections += 1
            ids = [event_id for event_id, _, _ in self.events if event_id is not None]
            try:
                part = await read_events(
                    self.client, self.url, last_event_id=ids[-1] if ids else None, on_event=self._arrived
                )
            except httpx2.TransportError:
                await asyncio.sleep(0.1)  # cut mid-stream: resume from the last id
                continue
            if part.status == 204:
                return
            if part.status >= 500:
                await asyncio.sleep(0.2)
                continue
            assert part.status == 200, part.status
        raise AssertionError("the stream did not end after 20 connections")


async def test_a_client_survives_losing_the_gateway_it_was_on(compose: LocalCompose) -> None:
    gateways = compose.replicas["gateway"]
    async with httpx2.AsyncClient(base_url=_public(compose), timeout=30) as client:
        created = await _create(client, tokens=300, per_second=50)  # about 6 s
        follower = Follower(client, created["events_url"])
        following = asyncio.create_task(follower.follow())
        await eventually(lambda: follower.deltas() >= 5, interval=0.02)
        # No upstream keepalive in deploy/nginx.conf: the one open connection to a gateway is this stream's.
        counts = [await asyncio.to_thread(_established, gateway.port) for gateway in gateways]
        assert sorted(counts) == [0, 1], f"open connections per gateway: {counts}"
        victim = gateways[counts.index(1)]
        seen_before = len(follower.events)
        struck = time.monotonic()
        try:
            await asyncio.to_thread(victim.stop, compose.stop_grace("gateway"))
            stopped_in = time.monotonic() - struck
            # uvicorn re-raises the SIGTERM it handled once it is done: -SIGTERM is a clean stop, -SIGKILL was not.
            assert victim.process is not None and victim.process.returncode in (0, -signal.SIGTERM), victim.log_tail()
            # New requests fail over to the gateway that is left, including those nginx first sends to the stopped one.
            for _ in range(4):
                assert (await client.get("/readyz")).status_code == 200
            await asyncio.wait_for(following, scaled(30))
        finally:
            if not following.done():
                following.cancel()
            await asyncio.to_thread(victim.start)
            await asyncio.to_thread(compose.wait_healthy, victim)
    _assert_whole(follower.events)
    assert follower.connections >= 2, "the stream never moved"
    assert len(follower.events) > seen_before, "nothing arrived after the gateway stopped"
    resumed_in = follower.arrivals[seen_before] - struck
    assert stopped_in < 5.0, f"the gateway took {stopped_in:.1f} s to end its streams and stop"
    assert resumed_in < 5.0, f"the client waited {resumed_in:.1f} s for its next event"


async def test_the_kubernetes_probes_answer_on_the_same_processes(compose: LocalCompose) -> None:
    """deploy/k8s runs the same commands as docker-compose.yml: each probe path answers 200 there."""
    manifests = [yaml.safe_load_all(path.read_text()) for path in sorted(K8S_DIR.glob("*.yaml"))]
    probes = {
        (
            doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"],
            container[probe]["httpGet"]["path"],
        )
        for docs in manifests
        for doc in docs
        if doc and doc["kind"] == "Deployment"
        for container in doc["spec"]["template"]["spec"]["containers"]
        for probe in ("readinessProbe", "livenessProbe", "startupProbe")
    }
    assert {service for service, _ in probes} == {"gateway", "worker"}
    async with httpx2.AsyncClient(timeout=10) as client:
        for service, path in sorted(probes):
            for replica in compose.replicas[service]:
                assert (await client.get(replica.url + path)).status_code == 200, f"{replica.name} {path}"
