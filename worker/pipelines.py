"""The script calls of every run in this worker process, sent to Redis together.

One append at a time goes out per run (the writer waits for each), but a worker runs many runs: the
calls they make while a round trip is on its way wait for it to come back, then go together as one
pipeline (one write, one read, one pool checkout). Under load a round trip carries many calls;
alone, a call goes at once. Each call keeps its own reply: a fenced run (its lease lost) fails
alone, the others go on, and a retried append keeps its id, as before. Appends and lease renewals
(which the lease keepers make at the same instants, so that they share round trips) go this way.
"""

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from shared.store import load_script


class ScriptPipeline:
    """Called as the script is (`await call(keys=..., args=...)`), by `SessionStore`."""

    def __init__(self, redis: Redis, name: str) -> None:
        self._redis = redis
        self._script = redis.register_script(load_script(name))
        self._waiting: list[tuple[list[Any], list[Any], asyncio.Future[Any]]] = []
        self._sending: asyncio.Task[None] | None = None

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((keys, args, future))
        if self._sending is None:
            self._sending = asyncio.create_task(self._send())
        return await future

    async def _send(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    replies = await self._execute([(keys, args) for keys, args, _ in batch])
                except BaseException as exc:  # the round trip failed: every call in it did
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for (_, _, future), reply in zip(batch, replies, strict=True):
                    if future.done():  # its caller stopped waiting (the run was cancelled)
                        continue
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        finally:
            self._sending = None

    async def _execute(self, calls: list[tuple[list[Any], list[Any]]]) -> list[Any]:
        replies = await self._pipeline(calls)
        if any(isinstance(reply, NoScriptError) for reply in replies):
            # Redis lost its scripts (a restart, SCRIPT FLUSH): load it, send those calls again.
            await self._redis.script_load(self._script.script)
            again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            for i, reply in zip(again, await self._pipeline([calls[i] for i in again]), strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, calls: list[tuple[list[Any], list[Any]]]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.evalsha(self._script.sha, len(keys), *keys, *args)
            return await pipe.execute(raise_on_error=False)
