"""Waiting for state no test can be told about (kept in Redis, in another process): retry a check.

A check is a predicate (it passes when it returns a true value) or an assertion (it passes when it
returns None without raising AssertionError); it may be async. `eventually` retries it every
`interval` until it passes, and returns what it returned; at the deadline it raises an
AssertionError that names the check and carries its last failure. Any other exception the check
raises ends the wait at once (a process that died, say), unless it is one of `ignoring` (a server
that does not answer yet). No timing is asserted: `within` only bounds how long a test waits.

Every wait is stretched by how loaded the machine is (`slowdown`): a bound sized for a quiet machine
becomes one that holds on a busy one, and costs nothing where the check passes early.
"""

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")

TIMEOUT = 10.0
MAX_SLOWDOWN = 4.0


def slowdown() -> float:
    """How many times longer than on a quiet machine a wait may take now: `TOKENTAIL_TEST_SLOWDOWN`,
    else the load per core (the 1-minute average), from 1 to MAX_SLOWDOWN."""
    if configured := os.environ.get("TOKENTAIL_TEST_SLOWDOWN"):
        return float(configured)
    return min(MAX_SLOWDOWN, max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1)))


def scaled(seconds: float) -> float:
    """A bound of `seconds` on a quiet machine, on this one now."""
    return seconds * slowdown()


def _passed(result: object) -> bool:
    """An assertion returns None when it held; a predicate returns whether it holds."""
    return result is None or bool(result)


def _describe(check: Callable[[], object]) -> str:
    name = getattr(check, "__qualname__", repr(check))
    if name.endswith("<lambda>"):
        try:
            return inspect.getsource(check).strip()
        except (OSError, TypeError):
            pass
    return str(name)


def _failure(check: Callable[[], object], what: str | None, within: float, tries: int, last: object) -> str:
    reason = "still false" if last is None else f"still failing ({type(last).__name__}: {last})"
    return f"{what or _describe(check)}: {reason} after {within:.3g} s and {tries} tries"


@overload
async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    within: float = ...,
    interval: float = ...,
    ignoring: tuple[type[Exception], ...] = ...,
    what: str | None = ...,
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T],
    *,
    within: float = ...,
    interval: float = ...,
    ignoring: tuple[type[Exception], ...] = ...,
    what: str | None = ...,
) -> T: ...


async def eventually(
    check: Callable[[], Awaitable[T] | T],
    *,
    within: float = TIMEOUT,
    interval: float = 0.01,
    ignoring: tuple[type[Exception], ...] = (),
    what: str | None = None,
) -> T:
    """Retry `check` (sync or async) until it passes; return its result. A try still running at the
    deadline is cancelled. `within` is stretched by `slowdown`."""
    within = scaled(within)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    retried: tuple[type[BaseException], ...] = (AssertionError, *ignoring)
    last: BaseException | None = None
    tries = 0
    while True:
        tries += 1
        scope = asyncio.timeout_at(deadline)
        try:
            async with scope:
                result = check()
                if inspect.isawaitable(result):
                    result = await result
        except retried as error:
            last = error
        except TimeoutError:
            if not scope.expired():
                raise
        else:
            if _passed(result):
                return result  # awaited, if it was awaitable
            last = None
        if loop.time() >= deadline:
            raise AssertionError(_failure(check, what, within, tries, last)) from last
        await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))


def eventually_sync(
    check: Callable[[], T],
    *,
    within: float = TIMEOUT,
    interval: float = 0.05,
    ignoring: tuple[type[Exception], ...] = (),
    what: str | None = None,
) -> T:
    """`eventually` for code with no event loop (a try is not cut short at the deadline)."""
    within = scaled(within)
    deadline = time.monotonic() + within
    retried: tuple[type[BaseException], ...] = (AssertionError, *ignoring)
    last: BaseException | None = None
    tries = 0
    while True:
        tries += 1
        try:
            result = check()
        except retried as error:
            last = error
        else:
            if _passed(result):
                return result
            last = None
        if time.monotonic() >= deadline:
            raise AssertionError(_failure(check, what, within, tries, last)) from last
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
