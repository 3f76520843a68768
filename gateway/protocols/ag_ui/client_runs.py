"""The runs AG-UI clients posted, by the client's own `runId`: TanStack AI's `joinRun(runId)` names
nothing else (no thread), so the gateway that took the POST notes which session and run it made
(`Keys.client_run`, on the sessions' Redis), and any gateway finds it there.

A `runId` names the run it first made (a POST sent again, or a `runId` a client reuses, changes
nothing), for as long as a chat's branch is kept past its last use: a join is for runs in flight or
just ended, so it is kept without an archive's "for good" too.
"""

from collections.abc import Awaitable
from typing import cast

from tokentail.shared.store import SessionStore, branch_kept_seconds


async def name_client_run(
    store: SessionStore, tenant: str, client_run_id: str, session_id: str, run_id: str, thread_id: str
) -> None:
    """Note that the tenant's client run `client_run_id` is run `run_id` of `session_id`, in thread
    `thread_id`, unless it names a run already."""
    key, named = store.keys.client_run(tenant, client_run_id), f"{session_id} {run_id} {thread_id}"
    await store.redis.set(key, named, ex=branch_kept_seconds(store.settings), nx=True)


async def client_run(store: SessionStore, tenant: str, client_run_id: str) -> tuple[str, str, str] | None:
    """The session, run and thread of the run the tenant's client posted as `client_run_id`. Reading it
    keeps it as long again."""
    key = store.keys.client_run(tenant, client_run_id)
    named = await cast(Awaitable[bytes | None], store.redis.getex(key, ex=branch_kept_seconds(store.settings)))
    if named is None:
        return None
    session_id, run_id, thread_id = named.decode().split(" ")
    return session_id, run_id, thread_id
