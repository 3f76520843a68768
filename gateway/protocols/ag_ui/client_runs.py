"""The runs AG-UI clients posted, by the client's own `runId`: TanStack AI's `joinRun(runId)` names
nothing else (no thread), so the gateway that took the POST notes which session and run it made
(`Keys.client_run`, on the sessions' Redis), and any gateway finds it there."""

from collections.abc import Awaitable
from typing import cast

from tokentail.shared.store import SessionStore, branch_kept_seconds


async def name_client_run(
    store: SessionStore, tenant: str, client_run_id: str, session_id: str, run_id: str, thread_id: str
) -> None:
    """Note that the tenant's client run `client_run_id` is run `run_id` of `session_id`, in thread
    `thread_id`: for as long as the chat's branch is kept (for good with an archive)."""
    key, named = store.keys.client_run(tenant, client_run_id), f"{session_id} {run_id} {thread_id}"
    kept = None if store.settings.archive_url else branch_kept_seconds(store.settings)
    await store.redis.set(key, named, ex=kept)


async def client_run(store: SessionStore, tenant: str, client_run_id: str) -> tuple[str, str, str] | None:
    """The session, run and thread of the run the tenant's client posted as `client_run_id`."""
    named = await cast(Awaitable[bytes | None], store.redis.get(store.keys.client_run(tenant, client_run_id)))
    if named is None:
        return None
    session_id, run_id, thread_id = named.decode().split(" ")
    return session_id, run_id, thread_id
