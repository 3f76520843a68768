"""What the write side's tests share (tests/unit's gateway/commands/ and worker/writes/, tests/integration's
test_hub.py and test_archive.py): a run's lease as its worker holds it, a session's event types, what its
channels publish, a lease run out, a question."""

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from tests.support.waiting import eventually
from tests.support.writes import AllWrites
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.records import Question, RunRecord
from tokentail.worker.writes.run_writes import RunLease


def lease_of(runs: AllWrites, session_id: str, run: RunRecord, token: str = "lease-1") -> RunLease:
    """The run's lease as its worker holds it from its start: its appends go on after `run.started`."""
    lease = RunLease(runs, session_id, run.run_id, token)
    lease.journal.written = run.started_seq or 0
    return lease


async def event_types(store: SessionStore, session_id: str) -> list[bytes]:
    return [event.type for event in await store.read(session_id, 0, 1000)]


async def next_published(pubsub: PubSub, count: int) -> list[bytes]:
    """The next `count` messages (after the subscription's confirmation), then proof of no other."""
    messages: list[bytes] = []

    async def received() -> bool:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.01)
        if message is not None:
            messages.append(message["data"])
        return len(messages) >= count

    await eventually(received, interval=0)
    assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05) is None
    return messages


async def expire_lease(store: SessionStore, redis: Redis, session_id: str) -> None:
    """What a killed worker leaves behind: its lease, its deadline long past, its index entry due."""
    await redis.hset(store.keys.session(session_id).meta, "lease_until", "0")  # type: ignore[misc]
    await redis.zadd(store.keys.lease_checks, {session_id: 0})


def a_question(input_id: str = "in_1", expires_at: float | None = None) -> Question:
    return Question(
        input_id=input_id, kind="text", prompt="Name?", answer_schema={"type": "string"}, expires_at=expires_at
    )
