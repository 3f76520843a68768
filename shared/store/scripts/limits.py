"""The contracts of the scripts that count a tenant's use across gateways (gateway/access/limits.py)."""

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from tokentail.shared.store.scripts.contract import KeyGroup, Script


@dataclass(slots=True)
class CounterKey(KeyGroup):
    counter: str


@dataclass(slots=True)
class Count(Script[int]):
    """Count one more in a window's counter; the first count starts its expiry."""

    SOURCE = "count"
    k: CounterKey
    ttl: int  # seconds

    def parse(self, reply: Any) -> int:
        return int(reply)


class ForkSpend(IntEnum):
    """What became of a fork's cost (spend_fork.lua)."""

    SPENT = 1
    RUNS_USED_UP = 0  # the tenant's runs of this minute: nothing spent
    BYTES_USED_UP = -1  # the bytes its forks may copy this hour, with this one's: nothing spent


@dataclass(slots=True)
class ForkCounters(KeyGroup):
    runs: str  # the tenant's runs counter of this minute (Count's)
    bytes: str  # the tenant's fork bytes counter of this hour


@dataclass(slots=True)
class SpendFork(Script[ForkSpend]):
    """Count a fork in both its tenant's counters, or in neither; a limit of 0 is none."""

    SOURCE = "spend_fork"
    k: ForkCounters
    runs_limit: int
    runs_ttl: int  # seconds
    copied: int  # bytes
    bytes_limit: int
    bytes_ttl: int  # seconds

    def parse(self, reply: Any) -> ForkSpend:
        return ForkSpend(int(reply))


@dataclass(slots=True)
class SlotsKey(KeyGroup):
    slots: str  # the tenant's (sorted set: slot id -> when it lapses, ms)
    token_slots: str  # a stream token's (its session's), alike: counted only with a `token_limit`


class Slot(IntEnum):
    TAKEN = 1
    TENANT_FULL = 0
    TOKEN_FULL = -1


@dataclass(slots=True)
class TakeSlot(Script[Slot]):
    """Take a slot unless the tenant holds `limit` live ones, or the token `token_limit` (0: a
    request of an API key, not counted per token)."""

    SOURCE = "take_slot"
    k: SlotsKey
    slot_id: str
    limit: int
    token_limit: int
    now_ms: int
    ttl_ms: int
    given_back: list[str]  # the tenant's slots given back but not yet removed: removed first

    def parse(self, reply: Any) -> Slot:
        return Slot(int(reply))
