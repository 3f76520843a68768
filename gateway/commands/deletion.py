"""Deleting a session, from the native API and the Responses API alike: in Redis at once (its run
fenced, its followers ended, a tombstone left), and its archive's copy, which waits for the archive
if it is down: delete_session.lua puts the session in the archive index, and an archiver deletes the
copy once the archive answers (worker/process/archiver.py), while the tombstone lasts."""

import logging

from tokentail.gateway.commands.writes import SessionWrites
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.errors import ArchiveUnavailable
from tokentail.shared.vocabulary.records import SessionRecord

logger = logging.getLogger(__name__)


async def delete_session(runs: SessionWrites, store: SessionStore, session: SessionRecord) -> bool:
    """Delete `session`; whether its archive's copy is gone too (False: the archive is down, and
    the copy is deleted when it is back). The session is deleted either way."""
    await runs.delete_session(session)
    if store.archive is None:
        return True
    try:
        await store.archive.delete(session.session_id)
    except ArchiveUnavailable as exc:
        logger.warning(
            "session %s deleted; its archived copy is deleted once the archive is back: %s", session.session_id, exc
        )
        return False
    return True
