"""A reconnect storm: every client of one gateway drops at once and reconnects where it was.

What a deploy or a network blip does to a busy gateway: SSE clients (10 per session, the sessions
streaming) lose their connections together and reconnect at once, as EventSource does, with
`Last-Event-ID` (Vercel's package: the characters read so far, `?skip=`, its way to resume).
Measured: the statuses the reconnects got (a browser's EventSource gives up on anything but 200),
whether every client resumed at exactly the id after its last and then read every id in order (none
lost, none repeated), the time to each answer, and the time until each client has caught up: read
every event appended before the reconnects began (what a watcher of each session that never dropped
had read by then). bench/compare.py runs it for each system (`reconnect_storm`), after the clients
were away for a while; run alone, on tokentail:

    .venv/bin/python bench/storm.py [--clients 1000] [--sessions 100] [--away 0] [--reset]

The gateway then runs with auth on and a tenant stream limit of exactly the connections (1,100: the
clients and a watcher per session), so every slot a dropped stream held must be back in time; one
client reconnecting on the same gateway while it is calm is the baseline of the same run.
"""

import argparse
import asyncio
import collections
import tempfile
import time
from typing import Any

import harness
import httpx2
from harness import Stack, create, percentile

API_KEY = "storm-key-0123456789abcdef"


class Client:
    """One SSE client that can drop and reconnect where it was: by `Last-Event-ID`, or `by_offset`,
    with the characters of the complete frames it has read (`?skip=`, ASCII streams)."""

    def __init__(self, port: int, path: str, by_offset: bool = False) -> None:
        self.port, self.path, self.by_offset = port, path, by_offset
        self.last_id = 0
        self.offset = 0
        self.out_of_order = 0  # ids that did not follow the one before on a connection: lost or repeated
        self.target = 0  # caught up once `last_id` reaches it
        self.writer: asyncio.StreamWriter | None = None
        self.reading: asyncio.Task[None] | None = None

    async def connect(self) -> tuple[int, float]:
        """Connect where it was: the status and the seconds until the answer's head. Then
        `first_id` has the first event's id, and `caught_up` the time it read up to `target`."""
        loop = asyncio.get_running_loop()
        self.first_id: asyncio.Future[int] = loop.create_future()
        self.caught_up: asyncio.Future[float] = loop.create_future()
        began = time.monotonic()
        reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        path, resume = self.path, f"Last-Event-ID: {self.last_id}\r\n" if self.last_id else ""
        if self.by_offset:
            path, resume = f"{path}{'&' if '?' in path else '?'}skip={self.offset}", ""
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: storm\r\nAccept: text/event-stream\r\n{resume}\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        answered = time.monotonic() - began
        if status != 200:
            self.drop()
            return status, answered
        if self.last_id >= self.target:
            self.caught_up.set_result(time.monotonic())
        self.reading = asyncio.create_task(self._read(reader))
        return status, answered

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buffer = b""
        while size := int((await reader.readline()).strip(), 16):
            buffer += (await reader.readexactly(size + 2))[:-2]
            *complete, buffer = buffer.split(b"\n\n")
            for raw in complete:
                self.offset += len(raw) + 2
                for line in raw.split(b"\n"):
                    if line.startswith(b"id: "):
                        self._event(int(line[4:]))

    def _event(self, event_id: int) -> None:
        if not self.first_id.done():  # where a connection starts is checked apart: `first_id`
            self.first_id.set_result(event_id)
        elif event_id != self.last_id + 1:
            self.out_of_order += 1
        self.last_id = event_id
        if event_id >= self.target and not self.caught_up.done():
            self.caught_up.set_result(time.monotonic())

    def drop(self, reset: bool = False) -> None:
        """Close the connection as a tab that reloads does, or `reset` it as a vanishing network."""
        if self.reading is not None:
            self.reading.cancel()
        if self.writer is not None:
            if reset:
                self.writer.transport.abort()
            else:
                self.writer.close()
            self.writer = None


async def reconnect_storm(
    port: int,
    paths: list[str],
    clients_count: int,
    away: float,
    by_offset: bool = False,
    reset: bool = False,
    warm: float = 2.0,
) -> dict[str, Any]:
    """`clients_count` clients of the streams at `paths` (and one watcher each that stays), reading
    for `warm` seconds, all dropped at once; `away` seconds later, all reconnect at once. Figures as
    the module says."""
    clients = [Client(port, paths[i % len(paths)], by_offset) for i in range(clients_count)]
    watchers = {path: Client(port, path, by_offset) for path in paths}
    opened = await asyncio.gather(*(client.connect() for client in [*clients, *watchers.values()]))
    if refused := collections.Counter(status for status, _ in opened if status != 200):
        raise RuntimeError(f"clients refused before the storm: {dict(refused)}")
    await asyncio.sleep(harness.patience(warm))  # each reads a few events

    for client in clients:
        client.drop(reset)
    held = [client.last_id for client in clients]
    await asyncio.sleep(away)
    for client in clients:
        client.target = watchers[client.path].last_id
    began = time.monotonic()
    results = await asyncio.gather(*(client.connect() for client in clients))
    answered = [elapsed for _, elapsed in results]
    back = [client for client, (status, _) in zip(clients, results, strict=True) if status == 200]
    # Each client's first id after the reconnect, and its catching up: given up on after 30 s (scaled).
    if futures := [client.first_id for client in back] + [client.caught_up for client in back]:
        await asyncio.wait(futures, timeout=harness.patience(30))
    caught_up = sorted(c.caught_up.result() - began for c in back if c.caught_up.done())
    firsts = [
        c.first_id.result() if status == 200 and c.first_id.done() else None
        for c, (status, _) in zip(clients, results, strict=True)
    ]
    for client in [*clients, *watchers.values()]:
        client.drop()
    await asyncio.sleep(harness.patience(1))  # the gateway sees them leave before it is stopped
    return {
        "clients": clients_count,
        "sessions": len(paths),
        "away_s": away,
        "statuses": dict(collections.Counter(status for status, _ in results)),
        "events_missed_mean": sum(c.target - last for c, last in zip(clients, held, strict=True)) / clients_count,
        "resumed_exactly": sum(first == last + 1 for first, last in zip(firsts, held, strict=True)),
        "out_of_order": sum(client.out_of_order for client in clients),
        "answer_p50_ms": percentile(answered, 50) * 1000,
        "answer_p99_ms": percentile(answered, 99) * 1000,
        "caught_up": len(caught_up),
        "caught_up_p50_ms": percentile(caught_up, 50) * 1000 if caught_up else float("inf"),
        "caught_up_p99_ms": percentile(caught_up, 99) * 1000 if caught_up else float("inf"),
        "all_caught_up_s": caught_up[-1] if len(caught_up) == clients_count else float("inf"),
    }


def report(figures: dict[str, Any]) -> str:
    """The storm's figures on one line."""
    return (
        f"statuses {figures['statuses']}, resumed at the id after their last {figures['resumed_exactly']}"
        f" of {figures['clients']}, ids out of order {figures['out_of_order']}; to the answer p50"
        f" {figures['answer_p50_ms']:.0f} ms, p99 {figures['answer_p99_ms']:.0f} ms; caught up"
        f" ({figures['events_missed_mean']:.1f} events missed each) {figures['caught_up']} of {figures['clients']},"
        f" p50 {figures['caught_up_p50_ms']:.0f} ms, p99 {figures['caught_up_p99_ms']:.0f} ms,"
        f" all in {figures['all_caught_up_s']:.2f} s"
    )


async def storm(stack: Stack, clients_count: int, sessions_count: int, away: float, reset: bool) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx2.AsyncClient(base_url=stack.url, timeout=30, headers=headers) as http:
        sessions = [await create(http, tokens=100_000, tokens_per_second=5) for _ in range(sessions_count)]
    paths = [f"/v1/sessions/{s['session_id']}/events?token={s['stream_token']}" for s in sessions]

    calm = Client(stack.port, paths[0])
    await calm.connect()
    await asyncio.sleep(1)
    calm.drop()
    _, calm_seconds = await calm.connect()
    calm.drop()
    await asyncio.sleep(1)  # its slot back under the tenant's limit

    figures = await reconnect_storm(stack.port, paths, clients_count, away, reset=reset)
    how = "reset" if reset else "closed"
    print(
        f"== reconnect storm: {figures['clients']} SSE clients of {sessions_count} streaming sessions (and a"
        f" watcher each), {how} at once, back {away:g} s later"
    )
    print(f"  {report(figures)}")
    print(f"  baseline, one client reconnecting while calm: {calm_seconds * 1000:.1f} ms to its answer")
    print(f"  storm p99 / calm: {figures['answer_p99_ms'] / 1000 / calm_seconds:.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--away", type=float, default=0.0, help="seconds between the drop and the reconnects")
    parser.add_argument("--reset", action="store_true", help="drop connections with a reset, not a close")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        # The tenant's stream limit stays on, at exactly the connections: the clients and the watchers.
        stack = Stack(
            data_dir,
            TOKENTAIL_MAX_STREAMS_PER_TENANT=str(args.clients + args.sessions),
            TOKENTAIL_API_KEYS=f"storm:{API_KEY}",
            TOKENTAIL_SECRET="s" * 32,
        )
        try:
            stack.start()
            asyncio.run(storm(stack, args.clients, args.sessions, args.away, args.reset))
        finally:
            stack.close()


if __name__ == "__main__":
    main()
