"""The runs AG-UI clients posted, by the client's own `runId`: TanStack AI's `joinRun(runId)` names
nothing else (no thread), so the gateway that took the POST notes which session and run it made
(`Keys.client_run`, on the sessions' Redis), and any gateway finds it there.

A `runId` names the run it first made (a POST sent again, or a `runId` a client reuses, changes
nothing), in its chat (two chats of a tenant may each post `run-1`), and in its tenant's names for the
first chat that posts it (an API key's join names no chat), for as long as a chat's branch is kept past
its last use: a join is for runs in flight or just ended, so it is kept without an archive's "for
good" too. The run's own id, which `RUN_STARTED` carries, names it as well: a second device that
learned the run from the wire (or from the session's state) joins it by that.
"""

from tokentail.gateway.access.ids import chat_session_id
from tokentail.shared.store.client_indexes import client_run_named
from tokentail.shared.store.client_indexes import name_client_run as name_in_store
from tokentail.shared.store.reads import SessionStore, branch_kept_seconds


async def name_client_run(
    store: SessionStore, tenant: str, client_run_id: str, session_id: str, run_id: str, thread_id: str
) -> None:
    """Note that the tenant's client run `client_run_id`, and `run_id` itself, are run `run_id` of
    `session_id`, in thread `thread_id`: in the thread's names, and in the tenant's (for an API key,
    which names no thread), unless each names a run already."""
    named, kept = f"{session_id} {run_id} {thread_id}", branch_kept_seconds(store.settings)
    scopes = (chat_session_id(tenant, thread_id), "")
    await name_in_store(store.redis, store.keys, kept, tenant, {client_run_id, run_id}, scopes, named)


async def client_run(
    store: SessionStore, tenant: str, client_run_id: str, chat: str = ""
) -> tuple[str, str, str] | None:
    """The session, run and thread of the run the tenant's client posted as `client_run_id`, in the chat
    whose own session is `chat` (a chat token's, or a thread's: `chat_session_id`); with none, the
    first of the tenant's chats to post it. Reading it keeps it as long again."""
    kept = branch_kept_seconds(store.settings)
    named = await client_run_named(store.redis, store.keys, kept, tenant, client_run_id, chat)
    if named is None:
        return None
    session_id, run_id, thread_id = named.split(" ")
    return session_id, run_id, thread_id
