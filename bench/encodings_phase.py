"""The encodings phase of bench/bench.py: what the gateway spends on each wire protocol.

- Following live: runs (50 tokens/s) are created over REST and each followed from its start in one
  encoding; the figure is gateway CPU per text delta delivered. Encodings take turns, so a slow spell
  of the box falls on all of them.
- Resuming: completed runs of `RESUME_DELTAS` text deltas, written straight into Redis through the
  store's own scripts (a gateway-only stack: no worker could take the runs' jobs), are each resumed
  by several clients at their middle, then near their end, natively (`?last_event_id=` the event id
  of that text delta) and over the Responses API (`starting_after=` the sequence number of the same
  delta), and read to the end; the figure is gateway CPU per resume, and the ratio Responses / native.

Given more than one stack (`--baseline REV`: another revision's gateway, bench/baseline.py), every
measurement is taken on each stack in turn, so the figures compared come from the same minutes.
"""

import asyncio
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import baseline as baseline_tree
import httpx2
from harness import OtherWork, Stack, cpu_seconds, create, read_sse
from light_producer import LEASE, begin
from redis.asyncio import Redis
from websockets.asyncio.client import connect

from tokentail.gateway.commands.writes import SessionWrites
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.vocabulary.events import MessageDelta, RunCompleted
from tokentail.shared.vocabulary.response_ids import response_id
from tokentail.worker.writes.run_writes import RunLease, RunWrites

RESUME_DELTAS = 500
# Where clients resume a completed run, by the text deltas they hold: at its middle (what a Responses
# resume is judged by), and near its end, where what a resume costs beyond sending is most of it.
RESUMED_AT = {"middle": RESUME_DELTAS // 2, "late": RESUME_DELTAS - 10}
# "responses again": the same completed runs resumed a second time on the gateway, which kept the
# frames of each response it read to its end (gateway/protocols/responses/finished.py); "responses": a first resume.
RESUMED = ("native", "responses", "responses again")


@dataclass(frozen=True)
class Encoding:
    """How a client follows a run from its start in one encoding, and the bytes that mark one text
    delta in what it reads. An HTTP stream ends with the run; a WebSocket is read until `end`."""

    path: Callable[[str, str], str]  # (session id, run id) -> the path to open
    delta: bytes
    accept: str = "text/event-stream"
    websocket: bool = False
    request: Callable[[str], dict[str, Any]] | None = None  # what a WebSocket client sends first
    end: tuple[bytes, ...] = ()  # what a WebSocket's last message holds (one of them)


ENCODINGS = {
    "native": Encoding(lambda sid, _: f"/v1/sessions/{sid}/events", b"\nevent: message.delta\n"),
    "ndjson": Encoding(
        lambda sid, _: f"/v1/sessions/{sid}/events", b'"event":"message.delta"', accept="application/x-ndjson"
    ),
    "websocket": Encoding(
        lambda sid, _: f"/v1/sessions/{sid}/ws?last_event_id=0",
        b'"event":"message.delta"',
        websocket=True,
        end=(b'"event":"run.completed"', b'"event":"run.failed"', b'"event":"run.cancelled"'),
    ),
    # A session id is a chat id of its own session, so a run made over REST is followed through the
    # chat protocols' reconnects: the active run from its start.
    "ai-sdk": Encoding(lambda sid, _: f"/v1/ai-sdk/chat/{sid}/stream", b'"type":"text-delta"'),
    "ai-sdk-ws": Encoding(
        lambda sid, _: "/v1/ai-sdk/chat/ws",
        b'"type":"text-delta"',
        websocket=True,
        request=lambda sid: {"type": "resume", "requestId": "bench", "id": sid},
        end=(b'"type":"end"', b'"type":"error"', b'"type":"no-active"'),
    ),
    "ag-ui": Encoding(lambda sid, _: f"/v1/ag-ui/{sid}", b'"type":"TEXT_MESSAGE_CONTENT"'),
    "responses": Encoding(
        lambda sid, run: f"/v1/responses/{response_id(sid, run)}?stream=true", b"\nevent: response.output_text.delta\n"
    ),
}


async def read_body(port: int, path: str, accept: str) -> bytes:
    """A GET's whole body (HTTP/1.1, chunked or of a known length: a Responses API stream that ended is
    sent whole) on a raw socket: cheap enough for hundreds at once."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: {accept}\r\n\r\n".encode())
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status:
            raise RuntimeError(f"GET {path}: {status.decode()}")
        if (length := re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)) is not None:
            return b"\n" + await reader.readexactly(int(length[1]))
        parts = []
        while size := int((await reader.readline()).strip(), 16):
            parts.append((await reader.readexactly(size + 2))[:-2])
        # The head's b"\n" makes a first frame's marker (which starts with one) match like the others.
        return b"\n" + b"".join(parts)
    finally:
        writer.close()


async def read_socket(port: int, path: str, request: dict[str, Any] | None, end: tuple[bytes, ...]) -> bytes:
    """A WebSocket's messages, one a line, up to and with the first that holds one of `end`."""
    messages = []
    async with connect(f"ws://127.0.0.1:{port}{path}", max_size=None) as socket:
        if request is not None:
            await socket.send(json.dumps(request))
        async for message in socket:
            messages.append(message.encode() if isinstance(message, str) else message)
            if any(marker in messages[-1] for marker in end):
                break
    return b"\n".join(messages)


async def read(port: int, encoding: Encoding, session_id: str, run_id: str, path: str | None = None) -> bytes:
    path = path or encoding.path(session_id, run_id)
    if encoding.websocket:
        request = encoding.request(session_id) if encoding.request is not None else None
        return await read_socket(port, path, request, encoding.end)
    return await read_body(port, path, encoding.accept)


async def follow_cost(stack: Stack, encoding: Encoding, streams: int, tokens: int) -> tuple[float, int]:
    """Gateway CPU seconds and text deltas delivered while `streams` runs (50 tokens/s) are created
    over REST and each followed, live, in `encoding`."""
    assert stack.gateway is not None
    before = cpu_seconds(stack.gateway.pid)
    async with httpx2.AsyncClient(base_url=stack.url) as client:
        runs = [await create(client, tokens=tokens, tokens_per_second=50) for _ in range(streams)]
    bodies = await asyncio.gather(*(read(stack.port, encoding, run["session_id"], run["run_id"]) for run in runs))
    return cpu_seconds(stack.gateway.pid) - before, sum(body.count(encoding.delta) for body in bodies)


async def completed_runs(stack: Stack, count: int) -> list[tuple[str, str]]:
    """`count` completed runs of RESUME_DELTAS text deltas each, written as a worker writes them."""
    redis = Redis.from_url(stack.redis.url)
    settings = Settings(redis_url=stack.redis.url, key_prefix=stack.prefix)
    gateway, runs = SessionWrites(redis, settings), RunWrites(redis, settings)
    made = []
    for _ in range(count):
        session_id, run_id = await begin(gateway, runs)
        lease = RunLease(runs, session_id, run_id, LEASE)
        texts = [f" token{i}" for i in range(RESUME_DELTAS)]
        for start in range(0, RESUME_DELTAS, 50):  # appends of the size a worker's are
            deltas = [MessageDelta(run_id=run_id, text=text).model_dump_json() for text in texts[start : start + 50]]
            await lease.append([("message.delta", data) for data in deltas])
        await lease.append([], ending=RunCompleted(run_id=run_id, output="".join(texts), usage={}))
        made.append((session_id, run_id))
    await redis.aclose()
    return made


async def resume_queries(stack: Stack, session_id: str, run_id: str) -> dict[tuple[str, str], str]:
    """The query that resumes a completed run just after each position of RESUMED_AT, by (encoding,
    position): natively the event id of that text delta, over the Responses API its sequence number."""
    native = await read_sse(stack.port, ENCODINGS["native"].path(session_id, run_id))
    ids = [frame.id for frame in native if frame.event == b"message.delta"]
    responses = await read_sse(stack.port, ENCODINGS["responses"].path(session_id, run_id))
    numbers = [json.loads(f.data)["sequence_number"] for f in responses if f.event == b"response.output_text.delta"]
    assert len(ids) == len(numbers) == RESUME_DELTAS, (len(ids), len(numbers))
    queries = {}
    for position, held in RESUMED_AT.items():
        queries[("native", position)] = f"?last_event_id={ids[held - 1]}"
        queries[("responses", position)] = f"&starting_after={numbers[held - 1]}"
    return queries


async def resume_cost(
    stack: Stack, encoding: str, runs: list[tuple[str, str]], query: str, held: int, clients: int
) -> float:
    """Gateway CPU seconds while `clients` clients resume each run with `query` (after its text
    delta `held`), each reading to the end, checked to get each text delta after that once."""
    assert stack.gateway is not None
    how = ENCODINGS[encoding]
    before = cpu_seconds(stack.gateway.pid)
    paths = [(session_id, run_id, how.path(session_id, run_id) + query) for session_id, run_id in runs]
    bodies = await asyncio.gather(*(read(stack.port, how, *run) for run in paths for _ in range(clients)))
    seconds = cpu_seconds(stack.gateway.pid) - before
    if wrong := {body.count(how.delta) for body in bodies} - {RESUME_DELTAS - held}:
        raise RuntimeError(f"{encoding} resumes after delta {held} of {RESUME_DELTAS} delivered {wrong} text deltas")
    return seconds


class Tally:
    """CPU seconds and counts summed over turns, by (stack, name)."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, str], list[float]] = {}

    def add(self, stack: str, name: str, seconds: float, count: int) -> None:
        total = self.sums.setdefault((stack, name), [0.0, 0])
        total[0] += seconds
        total[1] += count

    def micros(self, stack: str, name: str) -> float:
        seconds, count = self.sums[(stack, name)]
        return seconds / max(count, 1) * 1e6

    def count(self, stack: str, name: str) -> int:
        return int(self.sums[(stack, name)][1])


async def measure(stack: Stack, data_dir: str, quick: bool, baseline: str | None) -> dict[str, Any]:
    """The phase on `stack` (this tree's), and with `baseline` (a git revision) on a stack of that
    revision's gateway too: the figures for the JSON output, the baseline's and the ratios beside."""
    stacks = {"current": stack}
    if baseline is not None:
        commit = baseline_tree.commit_of(baseline)
        assert commit is not None, f"no commit {baseline}"  # bench.py checked it
        tree = baseline_tree.gateway_tree(commit, Path(data_dir) / "baseline")
        os.mkdir(Path(data_dir) / "baseline" / "redis")
        stacks[baseline] = Stack(str(Path(data_dir) / "baseline" / "redis"), gateway_tree=tree)
    try:
        found = await phase(stacks, quick)
    finally:
        if baseline is not None:
            stacks[baseline].close()
    if baseline is None:
        return found["current"]
    baseline_figures = {"rev": baseline, "commit": commit, **found[baseline]}
    return {**found["current"], "baseline": baseline_figures, "current_over_baseline": ratios(*found.values())}


async def phase(stacks: dict[str, Stack], quick: bool) -> dict[str, dict[str, Any]]:
    """Both figures on each stack (the first is this tree's; a second, the baseline), in turns,
    printed side by side; returned by stack. The stacks are (re)started here: with their workers
    to follow runs, gateway-only to resume them."""
    turns = 1 if quick else 3
    follow, resume = Tally(), Tally()
    print("== gateway CPU by encoding: per text delta of runs followed live, per resume of a completed run")
    for stack in stacks.values():
        stack.start()
    meter = OtherWork([pid for stack in stacks.values() for pid in stack.pids])
    for turn in range(turns):
        for index, (name, encoding) in enumerate(ENCODINGS.items()):  # in turns: a slow spell falls on all
            for label, stack in alternately(stacks, turn + index):
                seconds, deltas = await follow_cost(stack, encoding, 5 if quick else 100, 50 if quick else 250)
                follow.add(label, name, seconds, deltas)
    other = {"following": meter.share()}

    runs_each, clients = (2, 5) if quick else (20, 10)
    for stack in stacks.values():
        stack.start(with_worker=False)
    meter = OtherWork([pid for stack in stacks.values() for pid in stack.pids])
    for turn in range(turns):
        for position, held in RESUMED_AT.items():
            for label, stack in alternately(stacks, turn):
                # Runs of their own for each position: a first Responses resume finds nothing kept.
                runs = await completed_runs(stack, runs_each)
                queries = await resume_queries(stack, *runs[0])  # the same for every run: they are alike
                for name in RESUMED:  # "responses again" after "responses": it finds them kept
                    query = queries[(name.split()[0], position)]
                    seconds = await resume_cost(stack, name.split()[0], runs, query, held, clients)
                    resume.add(label, f"{name} {position}", seconds, runs_each * clients)
    other["resuming"] = meter.share()

    found = {label: {**figures(label, follow, resume), "other_cpu_share": other} for label in stacks}
    print_side_by_side(found)
    print(
        f"  (resumes: {turns} turn(s) of {runs_each} completed runs of {RESUME_DELTAS} text deltas x {clients}"
        f" clients, after delta {' and '.join(map(str, RESUMED_AT.values()))}, read to the end;"
        f" other CPU {other['following']:.0%} following, {other['resuming']:.0%} resuming)"
    )
    return found


def alternately(stacks: dict[str, Stack], step: int) -> list[tuple[str, Stack]]:
    """The stacks in order, or (every other step) in reverse: none is always measured first."""
    return list(stacks.items())[:: 1 if step % 2 == 0 else -1]


def figures(label: str, follow: Tally, resume: Tally) -> dict[str, Any]:
    per_resume = {f"{name} {at}": resume.micros(label, f"{name} {at}") for at in RESUMED_AT for name in RESUMED}
    return {
        "us_per_delta": {name: follow.micros(label, name) for name in ENCODINGS},
        "deltas": {name: follow.count(label, name) for name in ENCODINGS},
        "resume": {
            "deltas_per_run": RESUME_DELTAS,
            "after_delta": RESUMED_AT,
            "resumes": resume.count(label, f"native {next(iter(RESUMED_AT))}"),
            "us_per_resume": per_resume,
            "responses_over_native": {
                f"{name} {at}": ratio(per_resume[f"{name} {at}"], per_resume[f"native {at}"])
                for at in RESUMED_AT
                for name in RESUMED[1:]
            },
        },
    }


def rows(found: dict[str, Any]) -> dict[str, float]:
    """One stack's figures as the table's rows: µs per text delta, then µs per resume."""
    return {
        **found["us_per_delta"],
        **{f"resume {name}": micros for name, micros in found["resume"]["us_per_resume"].items()},
    }


def ratio(figure: float, against: float) -> float | None:
    """figure / against; None where `against` measured no CPU at all (a few resumes, below the clock's
    tick: `--quick`), where a ratio would say nothing."""
    return figure / against if against > 0 else None


def said(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.2f}x"


def ratios(current: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float | None]:
    """current / baseline for each row: below 1, the current gateway spends less."""
    before = rows(baseline)
    return {name: ratio(micros, before[name]) for name, micros in rows(current).items()}


def print_side_by_side(found: dict[str, dict[str, Any]]) -> None:
    labels = list(found)
    table = {label: rows(figures) for label, figures in found.items()}
    compared = ratios(found[labels[0]], found[labels[1]]) if len(labels) > 1 else {}
    print(
        f"  {'µs of gateway CPU':24}" + "".join(f"{label:>12}" for label in labels) + ("   ratio" if compared else "")
    )
    for name in table[labels[0]]:
        figures = "".join(f"{table[label][name]:12.1f}" for label in labels)
        against = f"   {said(compared[name]):>6}" if compared else ""
        deltas = f"  ({found[labels[0]]['deltas'][name]} deltas)" if name in ENCODINGS else ""
        print(f"  {name:24}{figures}{against}{deltas}")
    for label in labels:
        shares = found[label]["resume"]["responses_over_native"]
        costs = ", ".join(f"{said(share)} ({at})" for at, share in shares.items())
        print(f"  {label}: a Responses resume costs a native one's {costs}")
