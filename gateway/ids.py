"""Identifiers. Session ids are unguessable (128 random bits): knowing one is what lets a reader in."""

import re
import secrets

SESSION_ID_PATTERN = re.compile(r"s_[A-Za-z0-9_-]{22}")


def new_session_id() -> str:
    return "s_" + secrets.token_urlsafe(16)


def new_run_id() -> str:
    return "r_" + secrets.token_urlsafe(9)


def is_session_id(value: str) -> bool:
    return SESSION_ID_PATTERN.fullmatch(value) is not None
