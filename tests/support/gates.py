"""Holding a run at an instant by a signal the test sends, never by the run's length.

A test that must act while a run is still going (cut its stream, cancel it, kill its worker, poll it)
cannot count on the run lasting long enough: on a busy machine a 3 s answer ends before the test's
next request. So the run's agent waits at a gate instead, and the test releases it when it is done:

    agent side (the worker, in this process or another):   await gate(ctx)           # or gate(ctx, "name")
    test side:                                              gates.reached(run_id)     # the attempts that got there
                                                            gates.release(run_id)     # it goes on

A gate is a run's (its id) and a name's; it is shut until released, and a release is for good: every
attempt of the run that comes to it later goes through at once (a takeover's new attempt, an `@continues`
agent replaying up to it, the attempt after an answer). A test that wants the new attempt held too
releases it only after the takeover; `reached` tells it which attempts arrived.

The gates live in a folder, named by `TOKENTAIL_TEST_GATES` in the worker's environment: files, since
the worker may be another process (tests/e2e/conftest.py `Stack` sets it for its processes, and has
`stack.gates`; the `gates` fixture, tests/fixtures/gates.py, sets it for the in-process stack). The agent
looks for its release every few milliseconds. A gated run still ends if the test fails before it
releases it: the `gates` fixture and `Stack.close` release every gate, and a stopping worker cancels
what it runs.

`held` is an agent with a gate in its answer; the others here are built on `gate` where they need it.
"""

import asyncio
import os
import re
from pathlib import Path

from tokentail.worker.providers.scripted import DEFAULT_TOKENS, scripted_tokens
from tokentail.worker.run.agents import continues
from tokentail.worker.run.context import RunContext

FOLDER = "TOKENTAIL_TEST_GATES"
POLL_SECONDS = 0.01
_NAME = re.compile(r"[A-Za-z0-9_-]*")
_EVERY = "all.released"


def _path(folder: Path, run_id: str, name: str, suffix: str) -> Path:
    if not _NAME.fullmatch(name) or not _NAME.fullmatch(run_id):
        raise ValueError(f"a gate is named by letters, digits, '-' and '_': not {run_id!r}, {name!r}")
    return folder / f"{run_id}.{name}.{suffix}"


async def gate(ctx: RunContext, name: str = "") -> None:
    """Wait here until the test releases this run's gate `name` (at once if it did already). Notes
    the attempt's arrival first, for `Gates.reached`."""
    await gate_of(ctx.run_id, name, ctx.attempt)


async def gate_of(key: str, name: str = "", attempt: int = 0) -> None:
    """`gate`, for what has no run context (a tool, given its call id): wait at the gate of `key`
    (`Gates.release(key)`), noting `attempt`'s arrival."""
    where = os.environ.get(FOLDER)
    if where is None:
        raise RuntimeError(f"a gated agent needs {FOLDER} (the `gates` fixture, or a tests.e2e Stack)")
    folder = Path(where)
    with _path(folder, key, name, "reached").open("a") as reached:  # one short line: an atomic append
        reached.write(f"{attempt}\n")
    released, every = _path(folder, key, name, "released"), folder / _EVERY
    # No asyncio.Event can carry the release: the test may be another process. Unbounded: the test
    # decides how long the run waits (its teardown releases every gate).
    while not (released.exists() or every.exists()):  # noqa: ASYNC110
        await asyncio.sleep(POLL_SECONDS)


class Gates:
    """The test's side of the gates in `folder` (made if missing)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder

    @property
    def env(self) -> dict[str, str]:
        """What a worker process needs in its environment to find these gates."""
        return {FOLDER: str(self.folder)}

    def reached(self, run_id: str, name: str = "") -> list[int]:
        """The attempts of `run_id` that came to its gate `name`, in order (one may come twice: the
        attempt that goes on after an answer runs its agent again)."""
        try:
            return [int(line) for line in _path(self.folder, run_id, name, "reached").read_text().split()]
        except FileNotFoundError:
            return []

    def release(self, run_id: str, name: str = "") -> None:
        """Open `run_id`'s gate `name` for good."""
        _path(self.folder, run_id, name, "released").touch()

    def release_all(self) -> None:
        """Open every gate, now and later: what a test's teardown does, so that no run waits on."""
        (self.folder / _EVERY).touch()


@continues
async def held(ctx: RunContext) -> None:
    """Streams the scripted model's answer to its input (`params.tokens` long, as the model's) at once,
    but waits at the run's gate halfway through it. It goes on after a takeover (`@continues`): run
    again, it streams the same text, of which the replay sends only what clients did not have, and
    goes through its gate at once if it was released."""
    tokens = scripted_tokens(ctx.input, int(ctx.params.get("tokens", DEFAULT_TOKENS)))
    half = len(tokens) // 2
    for token in tokens[:half]:
        await ctx.delta(token)
    await gate(ctx)
    for token in tokens[half:]:
        await ctx.delta(token)
