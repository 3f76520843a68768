"""Calls scripts by their contracts (shared/store/scripts/contract.py) on the sessions' Redis (one
server, a Sentinel setup's primary, or a Redis Cluster) or the queue's.

`ScriptRunner` is the one way a script is called: it packs the contract's keys and arguments for
the deployment's topology, sends the script (EVALSHA, loaded again if Redis forgot it, with the
process's other commands: shared/connections/round_trips.py; on a cluster, with those of its keys'
primary), turns a fenced script's FENCED and LOST errors into `LeaseLost` and `WritesLost`, and
parses the reply. On a Sentinel setup (`acknowledge`), a script whose contract says a failover must
not take it back waits for a replica to have it. What a deployment adds around some scripts (the
queue's outbox, the archive's revival) wraps it once at start-up (shared/store/scripts/policies.py):
callers never ask which. The worker's per-token appends are the one path of their own
(worker/writes/appends.py).
"""

from typing import Any, Protocol, TypeVar

from redis.exceptions import ResponseError

from tokentail.shared.connections.redis_clients import AnyRedis, write_replicated
from tokentail.shared.connections.round_trips import round_trips
from tokentail.shared.store.scripts.contract import Effect, Packer, Script, Topology
from tokentail.shared.store.scripts.runs import raise_fenced

R = TypeVar("R")


class Run(Protocol):
    """A script runner, or a policy around one: `await run(script)` is the script's parsed reply."""

    async def __call__(self, script: Script[R]) -> R: ...


class ScriptRunner:
    """`acknowledge`: wait for a replica after the scripts that say so (`Effect.ACKNOWLEDGED`)."""

    def __init__(self, redis: AnyRedis, topology: Topology, acknowledge: bool = False) -> None:
        self.redis = redis
        self.topology = topology
        self._acknowledge = acknowledge
        self._registered: dict[type[Script[Any]], Any] = {}
        self._packers: dict[type[Script[Any]], Packer] = {}
        # With the process's other commands (on a cluster, those of the primary of its keys).
        self._joined = round_trips(redis)

    async def __call__(self, script: Script[R]) -> R:
        packer = self._packers.get(type(script)) or self._packer(type(script))
        keys, args = packer.keys(script), packer.args(script)
        try:
            registered = self._script(type(script))
            acknowledged = self._acknowledge and Effect.ACKNOWLEDGED in script.effects()
            if not acknowledged:
                return script.parse(await self._joined.script(registered, keys, args))
            call = lambda client: registered(keys=keys, args=args, client=client)  # noqa: E731
            return script.parse(await write_replicated(self.redis, call, acknowledged))  # type: ignore[arg-type]
        except ResponseError as error:
            raise_fenced(error)
            raise

    def _packer(self, contract: type[Script[Any]]) -> Packer:
        packer = self._packers[contract] = Packer.of(contract, self.topology)
        return packer

    def _script(self, contract: type[Script[Any]]) -> Any:
        if (script := self._registered.get(contract)) is None:
            # (No I/O: sent by its digest, and whole where Redis answers that it lacks it.)
            script = self.redis.register_script(contract.lua_source(self.topology))  # type: ignore[misc]
            self._registered[contract] = script
        return script
