"""What an ACP connection is sent, as the transports write it (routes.py): its outbox (the answers to its
requests, a load's replay) and each of its sessions' messages (render.py), each message with its id.

A session's messages are rendered from the session's stored events after the connection's place in it
(a session it made: from its start; one it loaded: after what the load replayed; or after a client's
`Last-Event-ID`), through the same feed as every stream: any gateway serves it, and a stream opened
again goes on where it stopped, nothing missed, nothing twice. Its ids are the session's event ids.
The outbox's ids are its entries'. Both wait for what comes, and say so at each of the hub's
heartbeats with nothing sent (None: a keepalive), so proxies keep the stream open.
"""

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from tokentail.gateway.live.hub import StreamHub
from tokentail.gateway.protocols.acp.render import AcpUpdates, Message, answers_in, client_methods
from tokentail.gateway.reading.feed import EventFeed, start_position
from tokentail.shared.features.acp_connections import AcpConnection, AcpConnections
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.vocabulary.events import TERMINAL_EVENTS, EventType

# Events after which a stream reads again which runs its connection prompted: a run queued (by this
# connection, or from elsewhere) and a run's end (which answers a prompt).
_PROMPTS_CHANGE = {EventType.RUN_QUEUED.value.encode(), *(kind.value.encode() for kind in TERMINAL_EVENTS)}

# What a stream sends at once: messages, each with its id (those of one read together, written in one
# go, as every stream of the gateway writes a batch), or None: a keepalive.
Sent = list[tuple[Message, str]] | None


@contextlib.asynccontextmanager
async def _told(
    hub: StreamHub, connections: AcpConnections, connection_id: str
) -> AsyncIterator[Callable[[], Awaitable[bool]]]:
    """A wait for the connection's outbox to be told of an entry, or for a heartbeat, on the hub's one
    notifications connection (no Redis connection held per stream). The first wait lasts until the
    hub hears the outbox's channel: what was put in it before, its reader reads after that wait."""
    subscription = hub.subscribe(f"acp:{connection_id}", connections.channel(connection_id))

    async def told() -> bool:
        """False once the hub stops (the gateway is stopping): the stream ends."""
        await subscription.told()
        return not subscription.closed

    try:
        yield told
    finally:
        hub.unsubscribe(subscription)


async def outbox(
    hub: StreamHub, connections: AcpConnections, connection_id: str, after: str = "0"
) -> AsyncIterator[Sent]:
    """The connection's outbox after entry `after`, then what comes, until the connection is gone;
    a keepalive at each heartbeat with nothing sent."""
    async with _told(hub, connections, connection_id) as told:
        going = await told()
        while going:
            entries = await connections.sent(connection_id, after)
            if entries:
                yield [(message, entry) for entry, messages in entries for message in messages]
                after = entries[-1][0]
            else:
                if await connections.get(connection_id) is None:  # (read: an open stream keeps it)
                    return
                yield None
            going = await told()


async def session_place(
    hub: StreamHub, connections: AcpConnections, connection_id: str, session_id: str
) -> AsyncIterator[int | None]:
    """The event after which the connection shows the session, once it does (a client may open the
    session's stream before the request that opens it, which puts its answer in the outbox: it waits
    for that); keepalives meanwhile, and nothing more if the connection is gone."""
    async with _told(hub, connections, connection_id) as told:
        going = await told()
        while going and (connection := await connections.get(connection_id)) is not None:
            if session_id in connection.sessions:
                yield connection.sessions[session_id]
                return
            yield None
            going = await told()


async def session_messages(
    hub: StreamHub,
    settings: Settings,
    connections: AcpConnections,
    connection: AcpConnection,
    session_id: str,
    after: int,
) -> AsyncIterator[Sent]:
    """The session's messages for the connection after event `after`, for as long as it is read (the
    agent's requests only those its client said at `initialize` it serves)."""
    connection_id = connection.connection_id
    session = await hub.store.get_session(session_id)
    serves = client_methods(connection.capabilities)
    updates = AcpUpdates(session_id, await connections.prompts(connection_id), answers_in(session), serves)
    start = await start_position(hub.store, session_id, after)
    feed = EventFeed(hub, session_id, start, settings.sse_batch, until_idle=False, transport="acp")
    async with contextlib.aclosing(feed.__aiter__()) as batches:
        async for batch in batches:
            if not batch.chunks:
                yield None  # idle: a heartbeat
                continue
            if any(event.type in _PROMPTS_CHANGE for event in batch.events):
                updates.prompts = await connections.prompts(connection_id)
            sent = [
                (message, str(seq) if seq is not None else "")
                for parts, seq in updates.rendered(batch)
                for message in parts
            ]
            if sent:
                yield sent
