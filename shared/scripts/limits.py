"""The contracts of the scripts that count a tenant's use across gateways (gateway/access/limits.py)."""

from dataclasses import dataclass
from typing import Any

from tokentail.shared.scripts.contract import KeyGroup, Script


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


@dataclass(slots=True)
class SlotsKey(KeyGroup):
    slots: str  # the tenant's (sorted set: slot id -> when it lapses, ms)


@dataclass(slots=True)
class TakeSlot(Script[bool]):
    """Take a slot unless the tenant holds `limit` live ones; False if not taken."""

    SOURCE = "take_slot"
    k: SlotsKey
    slot_id: str
    limit: int
    now_ms: int
    ttl_ms: int
    given_back: list[str]  # the tenant's slots given back but not yet removed: removed first

    def parse(self, reply: Any) -> bool:
        return bool(reply)
