"""What a run's attempt knows of its steers without asking Redis (docs/steering.md)."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from tokentail.shared.vocabulary.events import SteerFailure


@dataclass(slots=True)
class SteerInbox:
    """`sent`: a steer was sent since the agent last took steers in, as this worker was told (the
    gateway's notification on `Keys.steer_channel`, or a lease renewal, if that was missed): an agent
    streaming a long answer may stop at a safe point to take it in. `listening`: the agent took
    steers in, or looked for them; the steers left when its run ends fail `run_ended`, else
    `not_supported` (its agent takes none). `told`: whether this worker was told of every steer sent
    to the run since it started (its listener held its subscription throughout): then `sent` unset
    means none waits, and no boundary asks Redis (worker/running.py `told_of_steers`)."""

    sent: asyncio.Event = field(default_factory=asyncio.Event)
    listening: bool = False
    told: Callable[[], bool] = lambda: False

    @property
    def failure(self) -> SteerFailure:
        return "run_ended" if self.listening else "not_supported"
