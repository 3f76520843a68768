"""What a prompt costs over the Agent Client Protocol (issue 87: docs/acp.md) beside the native stream,
in one run: its first update's latency and the gateway's CPU per update.

    .venv/bin/python bench/acp_cost.py                 # 10 rounds of each kind, 10 prompts at once in each
    .venv/bin/python bench/acp_cost.py -n 2 -c 2       # a small run, to check the script itself
    .venv/bin/python bench/acp_cost.py -n 4 --tokens 800   # four times the updates a prompt (20 s answers)

On a private redis-server, one `tokentail gateway` process and one `tokentail worker` process (no auth,
no tenant limits), the offline scripted model. Three kinds of client, each `--concurrency` lanes, each
lane one session (made with `POST /v1/sessions` and no input, so its runs take the scripted params
below: ACP's `session/new` takes none) and, for ACP, one connection of the official Python client
(`agent-client-protocol`), initialized, the session shown on it with `session/resume` (its stream
open, over HTTP), all before anything is timed, and closed after the round. The gateway has its default
8 Redis connections (`--redis-connections`).

- ACP over Streamable HTTP (`create_http_stream`): `session/prompt`, its updates on the session's SSE
  stream (`Acp-Session-Id`), its answer at the run's end;
- ACP over the WebSocket (`create_websocket_stream`): the same on the socket;
- the native stream (the baseline): `POST /v1/sessions/{id}/runs`, then its SSE stream opened (`GET
  .../events?last_event_id=` the lane's last event) and read to the run's end, on a raw socket
  (bench/harness.py's reader), as bench/fork_cost.py's start to first token.

A round is one kind: every lane prompts once, at the same moment; the kinds take turns, round by round,
each first in every third round. Per prompt: first update latency, from sending the prompt (the
`session/prompt` request, or the POST) to the first `agent_message_chunk` at the client (or the first
`message.delta` frame read), and its whole duration (to the prompt's answer, or to the stream's last
frame). Per round: the gateway's CPU (`utime + stime` from /proc), Redis's and the worker's, divided by
the updates the clients were given (chunks, or delta frames: one for each `message.delta` event). Every
answer is the same scripted text (`PARAMS`). Figures are printed, never asserted; ratios compare kinds
measured in this same command.
"""

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, cast

import harness
import httpx2
from acp import connect_to_agent, text_block
from acp.http import create_http_stream
from acp.interfaces import Client
from acp.ws import create_websocket_stream
from harness import Stack, cpu_seconds, percentile, print_table, read_sse

# 200 tokens at 40 a second: two a tick of the scripted model (50 ms), so about one delta a tick after
# the writer's flush window: about 100 updates in 5 s. The run's fixed costs (its start, its end, the
# prompt's answer) are then a small part of the gateway's CPU per update.
PARAMS = {"tokens": 200, "tokens_per_second": 40}
PROMPT = "benchmark"
KINDS = ("acp-http", "acp-ws", "native")


@dataclass
class Prompted:
    """One prompt, at the client."""

    first_ms: float
    whole_ms: float
    updates: int


@dataclass
class Figures:
    """One kind's figures over all its rounds."""

    prompts: list[Prompted] = field(default_factory=list)
    gateway_s: float = 0.0  # CPU seconds over its rounds
    redis_s: float = 0.0
    worker_s: float = 0.0
    seconds: float = 0.0  # its rounds' wall time
    other: list[float] = field(default_factory=list)  # other work on the box in each round, share of a core

    @property
    def updates(self) -> int:
        return sum(prompt.updates for prompt in self.prompts)


class Editor:
    """The `Client` of one ACP lane: notes when the prompt's first text chunk came, and counts them."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.chunks = 0

    def reset(self) -> None:
        self.first, self.chunks = None, 0

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        if update.session_update == "agent_message_chunk":
            if self.first is None:
                self.first = time.perf_counter()
            self.chunks += 1

    async def request_permission(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the benchmark's agent asks nothing")


class AcpLane:
    """One editor: a connection of the official client, initialized, its session shown on it."""

    def __init__(self, url: str, session_id: str, ws: bool) -> None:
        self.url, self.session_id, self.ws = url, session_id, ws
        self.editor = Editor()
        self.transport: Any = None
        self.connection: Any = None

    async def open(self) -> None:
        if self.ws:
            self.transport = await create_websocket_stream(self.url.replace("http://", "ws://"), headers={})
        else:
            self.transport = create_http_stream(self.url, headers={})
        self.connection = connect_to_agent(cast(Client, self.editor), self.transport)
        await asyncio.wait_for(self.connection.initialize(protocol_version=1), harness.patience(30))
        await self.connection.resume_session(session_id=self.session_id, cwd="/bench", mcp_servers=[])
        await asyncio.sleep(0.2)  # (over HTTP: the session's stream opens when the answer names it)

    async def prompt(self) -> Prompted:
        self.editor.reset()
        sent = time.perf_counter()
        done = await asyncio.wait_for(
            self.connection.prompt(session_id=self.session_id, prompt=[text_block(PROMPT)]), harness.patience(120)
        )
        ended = time.perf_counter()
        if done.stop_reason != "end_turn" or self.editor.first is None:
            raise RuntimeError(f"ACP prompt: {done.stop_reason}, first chunk {self.editor.first}")
        return Prompted((self.editor.first - sent) * 1000, (ended - sent) * 1000, self.editor.chunks)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.connection.close()
        with contextlib.suppress(Exception):
            await self.transport.close()


class NativeLane:
    """One client of tokentail's own API: a POST for each run, then the session's SSE stream to its end."""

    def __init__(self, client: httpx2.AsyncClient, port: int, session_id: str) -> None:
        self.client, self.port, self.session_id = client, port, session_id
        self.last = 0  # the session's last event read

    async def prompt(self) -> Prompted:
        sent = time.perf_counter()
        response = await self.client.post(f"/v1/sessions/{self.session_id}/runs", json={"input": PROMPT})
        response.raise_for_status()
        path = f"/v1/sessions/{self.session_id}/events?last_event_id={self.last}"
        frames = await asyncio.wait_for(read_sse(self.port, path), harness.patience(120))
        ended = time.perf_counter()
        deltas = [frame for frame in frames if frame.event == b"message.delta"]
        if not deltas or frames[-1].event != b"run.completed":
            raise RuntimeError(f"{path}: no token, or no end: {[(f.id, f.event) for f in frames][-5:]}")
        self.last = frames[-1].id
        # (read_sse stamps frames with time.time(): taken back to perf_counter's scale)
        first = deltas[0].received - (time.time() - time.perf_counter())
        return Prompted((first - sent) * 1000, (ended - sent) * 1000, len(deltas))


async def session(client: httpx2.AsyncClient) -> str:
    response = await client.post("/v1/sessions", json={"model": "scripted", "params": PARAMS})
    response.raise_for_status()
    return str(response.json()["session_id"])


async def round_of(stack: Stack, lanes: list[Any], figures: Figures) -> None:
    """Every lane prompts once, at once; the processes' CPU over it."""
    assert stack.gateway is not None and stack.worker is not None
    pids = stack.gateway.pid, stack.redis.process.pid, stack.worker.pid
    other = harness.OtherWork(stack.pids)
    before, began = [cpu_seconds(pid) for pid in pids], time.monotonic()
    figures.prompts += await asyncio.gather(*(lane.prompt() for lane in lanes))
    after, figures.seconds = [cpu_seconds(pid) for pid in pids], figures.seconds + time.monotonic() - began
    figures.gateway_s += after[0] - before[0]
    figures.redis_s += after[1] - before[1]
    figures.worker_s += after[2] - before[2]
    figures.other.append(other.share())


async def measure(stack: Stack, rounds: int, concurrency: int) -> dict[str, Figures]:
    figures = {kind: Figures() for kind in KINDS}
    async with httpx2.AsyncClient(base_url=stack.url, timeout=harness.patience(60)) as client:
        sessions = {kind: [await session(client) for _ in range(concurrency)] for kind in KINDS}
        natives = [NativeLane(client, stack.port, session_id) for session_id in sessions["native"]]

        async def one_round(kind: str, lanes: int, into: Figures) -> None:
            """A round of `kind` on its first `lanes` sessions; ACP's connections opened (initialized,
            the session resumed on each) before it and closed after it, outside its figures."""
            if kind == "native":
                await round_of(stack, natives[:lanes], into)
                return
            acp = [AcpLane(f"{stack.url}/acp", session_id, kind == "acp-ws") for session_id in sessions[kind][:lanes]]
            try:
                await asyncio.gather(*(lane.open() for lane in acp))
                await round_of(stack, acp, into)
            finally:
                await asyncio.gather(*(lane.close() for lane in acp))

        warm = Figures()
        for kind in KINDS:  # the worker's first runs, each path's first use
            await one_round(kind, 1, warm)
        for i in range(rounds):
            order = KINDS[i % 3 :] + KINDS[: i % 3]
            for kind in order:
                await asyncio.sleep(0.5)
                await one_round(kind, concurrency, figures[kind])
            print(f"round {i + 1} of {rounds} done")
    return figures


def report(figures: dict[str, Figures], rounds: int, concurrency: int) -> None:
    base = figures["native"]
    print(f"\n{rounds} rounds of each kind, {concurrency} prompts at once in each; every answer {PARAMS}:")
    rows = [
        ("kind", "first update p50 ms", "p95", "whole prompt p50 ms", "p95", "updates a prompt")
        + ("gateway CPU µs / update", "Redis µs / update", "worker µs / update", "other work")
    ]
    for kind, kind_figures in figures.items():
        first = [prompt.first_ms for prompt in kind_figures.prompts]
        whole = [prompt.whole_ms for prompt in kind_figures.prompts]
        updates = kind_figures.updates
        rows.append(
            (kind, f"{percentile(first, 50):.1f}", f"{percentile(first, 95):.1f}")
            + (f"{percentile(whole, 50):,.0f}", f"{percentile(whole, 95):,.0f}")
            + (f"{updates / len(kind_figures.prompts):.1f}", f"{kind_figures.gateway_s / updates * 1e6:.0f}")
            + (f"{kind_figures.redis_s / updates * 1e6:.0f}", f"{kind_figures.worker_s / updates * 1e6:.0f}")
            + (f"{sum(kind_figures.other) / len(kind_figures.other):.0%}",)
        )
    print_table(rows)
    print("\nACP / native:")
    rows = [("kind", "first update p50", "p95", "whole prompt p50", "gateway CPU / update", "Redis CPU / update")]
    for kind in ("acp-http", "acp-ws"):
        acp = figures[kind]
        first = [prompt.first_ms for prompt in acp.prompts], [prompt.first_ms for prompt in base.prompts]
        whole = [prompt.whole_ms for prompt in acp.prompts], [prompt.whole_ms for prompt in base.prompts]
        rows.append(
            (kind, f"{percentile(first[0], 50) / percentile(first[1], 50):.2f}x")
            + (f"{percentile(first[0], 95) / percentile(first[1], 95):.2f}x",)
            + (f"{percentile(whole[0], 50) / percentile(whole[1], 50):.2f}x",)
            + (f"{(acp.gateway_s / acp.updates) / (base.gateway_s / base.updates):.2f}x",)
            + (f"{(acp.redis_s / acp.updates) / (base.redis_s / base.updates):.2f}x",)
        )
    print_table(rows)
    per_prompt = {kind: f.gateway_s / len(f.prompts) * 1000 for kind, f in figures.items()}
    print("\ngateway CPU ms a prompt (whole): " + ", ".join(f"{k} {v:.1f}" for k, v in per_prompt.items()))


async def main(rounds: int, concurrency: int, redis_connections: int) -> None:
    slowness = harness.calibrate()
    print(f"== calibration: this box takes {slowness:.2f}x the reference box's time; waits scale with it")
    print(f"load average at the start: {' '.join(f'{load:.2f}' for load in os.getloadavg())} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory() as data_dir:
        # Each ACP connection's stream holds one of the gateway's REST Redis connections (half of these)
        # in its outbox's XREAD BLOCK: with the default 8, ten connections get 503s ("No connection
        # available") as they start.
        stack = Stack(data_dir, TOKENTAIL_GATEWAY_REDIS_CONNECTIONS=str(redis_connections))
        try:
            stack.start()
            began = time.monotonic()
            figures = await measure(stack, rounds, concurrency)
            print(f"measured in {time.monotonic() - began:.0f} s")
        finally:
            stack.close()
    report(figures, rounds, concurrency)
    print(f"\nload average at the end: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--rounds", type=int, default=10, help="rounds of each kind")
    parser.add_argument("-c", "--concurrency", type=int, default=10, help="prompts at once in a round (lanes)")
    parser.add_argument(
        "--tokens",
        type=int,
        default=PARAMS["tokens"],
        help="tokens an answer (200), at 40 a second (an update every 2): how many updates share a prompt's costs",
    )
    parser.add_argument(
        "--redis-connections", type=int, default=8, help="the gateway's TOKENTAIL_GATEWAY_REDIS_CONNECTIONS (8)"
    )
    args = parser.parse_args()
    PARAMS["tokens"] = args.tokens
    asyncio.run(main(args.rounds, args.concurrency, args.redis_connections))
