"""Identifiers. Session ids are unguessable (128 random bits): knowing one is what lets a reader in."""

import base64
import hashlib
import re
import secrets

SESSION_ID_PATTERN = re.compile(r"s_[A-Za-z0-9_-]{22}")
RUN_ID_PATTERN = re.compile(r"r_[A-Za-z0-9_-]{12}")  # new_run_id's, and idempotent_id's with "r_"
# A chat id chosen by a client (useChat's `id`, AG-UI's `threadId`): what such ids are made of.
CHAT_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"


def new_session_id() -> str:
    return "s_" + secrets.token_urlsafe(16)


def new_run_id() -> str:
    return "r_" + secrets.token_urlsafe(9)


def new_steer_id() -> str:
    return "st_" + secrets.token_urlsafe(9)


def steer_id_of(run_id: str) -> str:
    """The id of the steer a follow-up becomes with multitask `steer`: made from its run's id, so the
    same request sent again (the same idempotency key) is the same steer."""
    return "st_" + run_id.removeprefix("r_")


def idempotent_id(prefix: str, *names: str) -> str:
    """The id a request sent with an `Idempotency-Key` gives its session (`s_`) or run (`r_`), from
    the key and what scopes it (the tenant; the session): the same request sent again names the same
    session or run, which the scripts make once (queue_run.lua). As long as a random one of its kind."""
    digest = hashlib.sha256("\0".join(("tokentail idempotency", *names)).encode()).digest()
    return prefix + base64.urlsafe_b64encode(digest).decode()[: 22 if prefix == "s_" else 12]


def is_session_id(value: str) -> bool:
    return SESSION_ID_PATTERN.fullmatch(value) is not None


def is_run_id(value: str) -> bool:
    return RUN_ID_PATTERN.fullmatch(value) is not None


def chat_session_id(tenant: str, chat_id: str) -> str:
    """The session of a client-chosen chat id: a session id is itself (one that exists and is the
    caller's: no session is made at an id a client chose); any other id names a session of its
    tenant's own, so two tenants' chats of the same id never meet. With auth off every caller
    is one tenant, and the chat id is what lets a reader in: it must be unguessable then (useChat's
    and AG-UI's generated ids are)."""
    if is_session_id(chat_id):
        return chat_id
    digest = hashlib.sha256(f"tokentail chat id\0{tenant}\0{chat_id}".encode()).digest()
    return "s_" + base64.urlsafe_b64encode(digest).decode()[:22]
