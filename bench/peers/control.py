"""The control endpoint of the benchmark's Python producers: `POST /start?<params>` starts a stream.

`start(params)` prepares the stream (answered with what it returns, as JSON) and gives back the
coroutine that produces it, which runs as a task of its own; keep-alive connections, no framework.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import parse_qs, urlsplit

Start = Callable[[dict[str, str]], Awaitable[tuple[dict[str, Any], Coroutine[Any, Any, None]]]]


async def serve_starts(port: int, start: Start) -> None:
    running: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            target = line.split()[1].decode()
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            answer, stream = await start({k: v[0] for k, v in parse_qs(urlsplit(target).query).items()})
            task = asyncio.create_task(stream)
            running.add(task)
            task.add_done_callback(running.discard)
            body = json.dumps(answer).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))

    async with await asyncio.start_server(handle, "127.0.0.1", port) as server:
        await server.serve_forever()
