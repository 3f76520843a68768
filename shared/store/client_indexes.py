"""The indexes by the names clients give, beside the runs index (shared/store/run_index.py): the
tasks a tenant started through A2A with an agent (`TaskIndex`), the runs AG-UI clients posted by their
own run id (`name_client_run`, `client_run_named`), and where a chat goes on since it branched
(`point_chat`; `chat_branch` and `chat_branches` read it). Each lives on the sessions' Redis under one
hash tag (the tenant's, or the chat's session's), so the sessions' Redis may be a Cluster.

Plain commands, not scripts: each index is a name pointing at a run or session, and none of them
changes a session.
"""

from collections.abc import Awaitable, Iterable
from typing import cast

from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import branch_kept_seconds


class TaskIndex:
    """The tasks each tenant started through A2A with each agent, newest first: what ListTasks reads
    when it is not given a context. Only A2A's start writes it, and it keeps the newest `LIMIT` only
    (older tasks are still found by id, or by context); an entry whose session is gone is dropped by
    the listing that finds it so. Its key lapses when no task was started for a finished session's
    retention."""

    LIMIT = 1000

    def __init__(self, redis: AnyRedis, keys: Keys, ttl_seconds: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = ttl_seconds

    async def add(self, tenant: str, agent: str, task_id: str, at: float) -> None:
        key = self._keys.a2a_tasks(tenant, agent)
        await self._redis.zadd(key, {task_id: int(at * 1000)})
        await self._redis.zremrangebyrank(key, 0, -self.LIMIT - 1)
        await self._redis.expire(key, self._ttl)

    async def ids(self, tenant: str, agent: str) -> list[str]:
        return [raw.decode() for raw in await self._redis.zrevrange(self._keys.a2a_tasks(tenant, agent), 0, -1)]

    async def drop(self, tenant: str, agent: str, task_ids: list[str]) -> None:
        if task_ids:
            await self._redis.zrem(self._keys.a2a_tasks(tenant, agent), *task_ids)


async def name_client_run(
    redis: AnyRedis, keys: Keys, kept_seconds: int, tenant: str, names: Iterable[str], scopes: Iterable[str], run: str
) -> None:
    """Note that each of the tenant's client run `names`, in each of `scopes` (a chat's own session, or
    '': the tenant's), is `run` (`Keys.client_run`'s value), unless it names a run already; kept
    `kept_seconds`. One round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            for scope in scopes:
                pipe.set(keys.client_run(tenant, name, scope), run, ex=kept_seconds, nx=True)
        await pipe.execute()


async def client_run_named(
    redis: AnyRedis, keys: Keys, kept_seconds: int, tenant: str, name: str, scope: str
) -> str | None:
    """What `name_client_run` noted of the tenant's client run `name` in `scope`, kept `kept_seconds` more."""
    named = await cast(Awaitable[bytes | None], redis.getex(keys.client_run(tenant, name, scope), ex=kept_seconds))
    return named.decode() if named is not None else None


# The branches a chat's list keeps, the newest (a LangGraph thread's history reads each of them).
MAX_CHAT_BRANCHES = 32


async def point_chat(redis: AnyRedis, keys: Keys, settings: Settings, chat_session_id: str, branch: str) -> None:
    """From now on the chat of session `chat_session_id` goes on in session `branch`, kept as long as
    `chat_branch` keeps it when it reads it; `branch` is one of the chat's branches (`chat_branches`)
    from then on."""
    session_keys = keys.session(chat_session_id)
    kept = None if settings.archive_url else branch_kept_seconds(settings)  # archived: kept for good
    async with redis.pipeline(transaction=False) as pipe:  # (one slot; a cluster's client takes no MULTI)
        pipe.set(session_keys.branch, branch, ex=kept)
        pipe.rpush(session_keys.branches, branch)
        pipe.ltrim(session_keys.branches, -MAX_CHAT_BRANCHES, -1)
        if kept is not None:
            pipe.expire(session_keys.branches, kept)
        await pipe.execute()


async def chat_branch(redis: AnyRedis, keys: Keys, settings: Settings, session_id: str) -> str | None:
    """The session that the chat of session `session_id` goes on in since it branched, if it did.
    Reading it keeps it (`branch_kept_seconds` more): a chat in use keeps its branch, and its branches."""
    session_keys = keys.session(session_id)
    if settings.archive_url:  # sessions are kept for good: so is the chat's branch
        branch = await cast(Awaitable[bytes | None], redis.get(session_keys.branch))
    else:
        kept = branch_kept_seconds(settings)
        async with redis.pipeline(transaction=False) as pipe:  # (one slot) its list of branches too
            pipe.getex(session_keys.branch, ex=kept)
            pipe.expire(session_keys.branches, kept)
            branch, _ = await pipe.execute()
    return branch.decode() if branch else None


async def chat_branches(redis: AnyRedis, keys: Keys, session_id: str) -> list[str]:
    """Every session the chat of session `session_id` went on in, oldest first (`point_chat`), its own aside."""
    listed = await cast(Awaitable[list[bytes]], redis.lrange(keys.session(session_id).branches, 0, -1))
    return list(dict.fromkeys(branch.decode() for branch in listed))
