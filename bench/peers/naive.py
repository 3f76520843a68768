"""The naive peer: what a competent developer writes first. FastAPI + sse-starlette, one blocking
`XREAD` loop (and so one Redis connection) per client, resumable from `Last-Event-ID`.

    python bench/peers/naive.py gateway <port>    GET /stream/<id>
    python bench/peers/naive.py producer <port>   POST /start?id=&tokens=&rate=

The producer appends like tokentail's worker, to the same workload: the first token at once, then
the tokens due every 50 ms joined into one entry (`<seq>-0`, fields `data` and `ts`, the Redis-time
of no interest here: `ts` is the producer's clock in microseconds), ending with a `done` entry.
REDIS_URL names the Redis.
"""

import asyncio
import json
import os
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Header, Request
from redis.asyncio import Redis
from sse_starlette import EventSourceResponse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from control import serve_starts  # noqa: E402

FLUSH_SECONDS = 0.05
PREFIX = "naive:"


def gateway() -> FastAPI:
    app = FastAPI()
    pool = Redis.from_url(os.environ["REDIS_URL"])  # a connection per waiting XREAD, as it comes

    @app.get("/stream/{stream_id}")
    async def stream(stream_id: str, request: Request, last_event_id: str | None = Header(None)) -> EventSourceResponse:
        async def events():  # type: ignore[no-untyped-def]
            after = f"{last_event_id or 0}-0"
            while True:
                reply = await pool.xread({PREFIX + stream_id: after}, count=100, block=15_000)
                if not reply:
                    continue
                for entry_id, fields in reply[0][1]:
                    after = entry_id.decode()
                    if fields[b"data"] == b"done":
                        yield {"id": after.split("-")[0], "event": "done", "data": "{}"}
                        return
                    yield {"id": after.split("-")[0], "event": "message.delta", "data": fields[b"data"].decode()}

        return EventSourceResponse(events(), ping=15, sep="\n")  # the load generator splits on \n\n

    return app


async def produce(redis: Redis, stream_id: str, tokens: int, rate: float, burst: bool) -> None:
    key, started, sent, seq = PREFIX + stream_id, time.monotonic(), 0, 0
    due_ms = time.time() * 1000  # token i is due i / rate after it, and is that time (bench/systems.py, CLOCK)
    if burst:  # a backlog: one token per entry, all at once
        async with redis.pipeline(transaction=False) as pipe:
            for seq in range(1, tokens + 1):
                pipe.xadd(
                    key, {"data": json.dumps({"t": time.time() * 1000, "text": "token "}), "ts": 0}, id=f"{seq}-0"
                )
            await pipe.execute()
        sent = tokens
    while sent < tokens:
        due = min(tokens, int((time.monotonic() - started) * rate) + 1)
        if due > sent:
            seq += 1
            text = "".join(f"{due_ms + (i * 1000 / rate if rate else 0):.1f} " for i in range(sent, due))
            data = json.dumps({"t": time.time() * 1000, "text": text})
            await redis.xadd(key, {"data": data, "ts": int(time.time() * 1e6)}, id=f"{seq}-0")
            sent = due
        await asyncio.sleep(FLUSH_SECONDS)
    await redis.xadd(key, {"data": "done", "ts": int(time.time() * 1e6)}, id=f"{seq + 1}-0")


async def producer(port: int) -> None:
    redis = Redis.from_url(os.environ["REDIS_URL"])

    async def start(query: dict[str, str]) -> tuple[dict[str, str], Coroutine[Any, Any, None]]:
        tokens, rate = int(query["tokens"]), float(query["rate"])
        return {}, produce(redis, query["id"], tokens, rate, "burst" in query)

    await serve_starts(port, start)


if __name__ == "__main__":
    role, port = sys.argv[1], int(sys.argv[2])
    if role == "gateway":
        uvicorn.run(gateway(), host="127.0.0.1", port=port, log_level="warning", loop="uvloop", http="httptools")
    else:
        import uvloop

        uvloop.run(producer(port))
