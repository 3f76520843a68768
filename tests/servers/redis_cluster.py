"""The local Redis Cluster in the tests: `LocalCluster` (tokentail/redis_server.py, which the benchmark
uses too) where one can be made, and a skip, or a failure in CI, where none can; and a slot moved to
another primary under the tests' feet, at once (`move_slot`) or key by key (`migrating`), as
`redis-cli --cluster reshard` moves it."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis as sync_redis

from tokentail.redis_server import LocalCluster, cluster_unavailable


def require() -> None:
    """Skip the test where no local cluster can be made; fail it in CI, which must provide one."""
    if (why := cluster_unavailable()) is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{why}: .ci/run should have installed Redis >= 7.0 and redis-cli")
        pytest.skip(why)


def _command(client: sync_redis.Redis, *args: Any) -> Any:
    """A raw command (CLUSTER, MIGRATE), which redis-py leaves untyped."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


class Migration:
    """A slot on its way from `source` to `target` (MIGRATING on one, IMPORTING on the other): its keys
    move when `migrate` says so; a command on one already moved is answered ASK by the source."""

    def __init__(self, source: sync_redis.Redis, target: sync_redis.Redis, target_port: int, slot: int) -> None:
        self.source, self.target, self.slot = source, target, slot
        self.target_port = target_port
        self.address = f"127.0.0.1:{target_port}"  # the target's

    def migrate(self, *keys: str | bytes) -> None:
        """Move `keys` (every key of the slot still on the source, if none is named)."""
        if keys:
            _command(self.source, "MIGRATE", "127.0.0.1", self.target_port, "", 0, 5000, "KEYS", *keys)
            return
        while left := _command(self.source, "CLUSTER", "GETKEYSINSLOT", self.slot, 100):
            _command(self.source, "MIGRATE", "127.0.0.1", self.target_port, "", 0, 5000, "KEYS", *left)


@contextmanager
def migrating(cluster: LocalCluster, slot: int) -> Iterator[Migration]:
    """`slot` migrating to another primary while the block runs; when it ends, the slot's keys left
    are moved and every node names the target the slot's primary."""
    clients = {node.port: sync_redis.Redis(port=node.port) for node in cluster.nodes}
    try:
        source_port = next(port for port, client in clients.items() if slot in _slots_of(client))
        target_port = next(port for port in clients if port != source_port)
        source, target = clients[source_port], clients[target_port]
        source_id, target_id = (_command(c, "CLUSTER", "MYID").decode() for c in (source, target))
        _command(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        _command(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        migration = Migration(source, target, target_port, slot)
        yield migration
        migration.migrate()
        for client in (target, source, *(c for p, c in clients.items() if p not in (source_port, target_port))):
            _command(client, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
    finally:
        for client in clients.values():
            client.close()


def move_slot(cluster: LocalCluster, slot: int) -> str:
    """Migrate `slot` (its keys too) to another primary, as `redis-cli --cluster reshard` does; the
    address of its new primary."""
    with migrating(cluster, slot) as migration:
        pass
    return migration.address


def _slots_of(client: sync_redis.Redis) -> set[int]:
    myself = next(line for line in _command(client, "CLUSTER", "NODES").decode().splitlines() if "myself" in line)
    slots: set[int] = set()
    for part in myself.split()[8:]:
        if part.startswith("["):
            continue
        start, _, end = part.partition("-")
        slots.update(range(int(start), int(end or start) + 1))
    return slots
