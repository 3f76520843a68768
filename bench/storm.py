"""A reconnect storm: every client of one gateway drops at once and reconnects with its last id.

What a deploy or a network blip does to a busy gateway: 1,000 SSE clients (10 per session, the
sessions streaming) lose their connections together and reconnect at once, as EventSource does, with
`Last-Event-ID`. The gateway runs with its defaults, tenant stream limit included (1,000: exactly the
clients, so every slot a dropped stream held must be back in time). Printed: the statuses the
reconnects got (a browser's EventSource gives up on anything but 200), the time to the first resumed
event, whether every client resumed at exactly the id after its last, and, as the baseline of the
same run, one client reconnecting on the same gateway while it is calm.

    .venv/bin/python bench/storm.py [--clients 1000] [--sessions 100] [--reset]
"""

import argparse
import asyncio
import collections
import tempfile
import time

import httpx2
from harness import Stack, create, percentile

API_KEY = "storm-key-0123456789abcdef"


class Client:
    def __init__(self, port: int, session_id: str, token: str) -> None:
        self.port, self.session_id, self.token = port, session_id, token
        self.last_id = 0
        self.writer: asyncio.StreamWriter | None = None
        self.reading: asyncio.Task[None] | None = None

    async def connect(self) -> tuple[int, int | None, float]:
        """Connect with the last id: the status, the first event's id (None if refused), and the
        seconds until the answer's head."""
        self.first_id: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        began = time.monotonic()
        reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(
            f"GET /v1/sessions/{self.session_id}/events?token={self.token} HTTP/1.1\r\nHost: storm\r\n"
            f"Accept: text/event-stream\r\nLast-Event-ID: {self.last_id}\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        answered = time.monotonic() - began
        if status != 200:
            self.drop()
            return status, None, answered
        self.reading = asyncio.create_task(self._read(reader))
        return status, await self.first_id, answered

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buffer = b""
        while size := int((await reader.readline()).strip(), 16):
            buffer += (await reader.readexactly(size + 2))[:-2]
            *complete, buffer = buffer.split(b"\n\n")
            for raw in complete:
                for line in raw.split(b"\n"):
                    if line.startswith(b"id: "):
                        self.last_id = int(line[4:])
                        if not self.first_id.done():
                            self.first_id.set_result(self.last_id)

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


async def storm(stack: Stack, clients_count: int, sessions_count: int, reset: bool) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx2.AsyncClient(base_url=stack.url, timeout=30, headers=headers) as http:
        sessions = [await create(http, tokens=100_000, tokens_per_second=5) for _ in range(sessions_count)]
    clients = [
        Client(stack.port, session["session_id"], session["stream_token"])
        for session in (sessions[i % sessions_count] for i in range(clients_count))
    ]
    opened = await asyncio.gather(*(client.connect() for client in clients))
    assert all(status == 200 for status, _, _ in opened), collections.Counter(status for status, _, _ in opened)
    await asyncio.sleep(2)  # each reads a few tokens

    calm = clients[0]
    calm.drop()
    _, _, calm_seconds = await calm.connect()

    for client in clients:
        client.drop(reset)
    held = [client.last_id for client in clients]
    began = time.monotonic()
    results = await asyncio.gather(*(client.connect() for client in clients))
    whole = time.monotonic() - began
    statuses = collections.Counter(status for status, _, _ in results)
    resumed_exactly = sum(first == last + 1 for (_, first, _), last in zip(results, held, strict=True))
    seconds = sorted(elapsed for _, _, elapsed in results)
    how = "reset" if reset else "closed"
    print(f"== reconnect storm: {clients_count} SSE clients of {sessions_count} streaming sessions, {how} at once")
    print(f"  statuses: {dict(statuses)}")
    print(f"  resumed at the id after their last: {resumed_exactly} of {clients_count}")
    print(
        f"  to the answer (200 or a refusal): p50 {percentile(seconds, 50) * 1000:.0f} ms, "
        f"p99 {percentile(seconds, 99) * 1000:.0f} ms, all in {whole:.1f} s"
    )
    print(f"  baseline, one client reconnecting while calm: {calm_seconds * 1000:.1f} ms to its answer")
    print(f"  storm p99 / calm: {percentile(seconds, 99) / calm_seconds:.0f}x")
    for client in clients:
        client.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--reset", action="store_true", help="drop connections with a reset, not a close")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        # The defaults a deployment runs with: the tenant's stream limit (1,000) stays on.
        stack = Stack(
            data_dir,
            TOKENTAIL_MAX_STREAMS_PER_TENANT="1000",
            TOKENTAIL_API_KEYS=f"storm:{API_KEY}",
            TOKENTAIL_SECRET="s" * 32,
        )
        try:
            stack.start()
            asyncio.run(storm(stack, args.clients, args.sessions, args.reset))
        finally:
            stack.close()


if __name__ == "__main__":
    main()
