"""Stream tokens: short-lived, signed grants to one session, for clients that hold no API key.

    v1.<payload>.<signature>     payload: base64url JSON {"sid": session id, "ten": tenant, "exp": unix s,
                                                          "scp": "chat" (absent: "read")}
                                 signature: base64url HMAC-SHA256(key, "v1." + payload)

The key is derived from `TOKENTAIL_SECRET`, so every gateway replica sharing the secret accepts the
tokens of the others. Nothing is stored: a token is checked by its signature and expiry alone.
"""

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from tokentail.shared.vocabulary.errors import TokenExpired, Unauthorized

VERSION = "v1"
# `read`: the session's events, state and token refresh. `chat`: also queue runs and cancel them in
# that one session, what a browser chat UI (useChat, AG-UI) does itself; never delete, never another session.
Scope = Literal["read", "chat"]


@dataclass(frozen=True)
class StreamGrant:
    session_id: str
    tenant: str
    expires_at: int  # unix seconds
    scope: Scope = "read"


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamTokens:
    def __init__(self, secret: str, ttl_seconds: int, clock: Callable[[], float] = time.time) -> None:
        # A key of its own, so the secret could sign other things one day without tokens being confused.
        self._key = hmac.new(secret.encode(), b"tokentail stream token v1", hashlib.sha256).digest()
        self._ttl = ttl_seconds
        self._clock = clock

    def issue(self, session_id: str, tenant: str, scope: Scope = "read") -> tuple[str, int]:
        """A new token for `session_id`, and when it expires (unix seconds)."""
        expires_at = int(self._clock()) + self._ttl
        claims: dict[str, str | int] = {"sid": session_id, "ten": tenant, "exp": expires_at}
        if scope != "read":
            claims["scp"] = scope
        payload = _b64encode(json.dumps(claims).encode())
        return f"{VERSION}.{payload}.{self._sign(payload)}", expires_at

    def verify(self, token: str) -> StreamGrant:
        """The grant a token carries; `Unauthorized` if it was not signed with our key, `TokenExpired`
        if it is past its expiry."""
        version, _, rest = token.partition(".")
        payload, _, signature = rest.partition(".")
        if version != VERSION or not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            raise Unauthorized("the stream token is not valid")
        try:
            claims = json.loads(_b64decode(payload))
            scope = claims.get("scp", "read")
            if scope not in ("read", "chat"):
                raise ValueError(scope)
            grant = StreamGrant(str(claims["sid"]), str(claims["ten"]), int(claims["exp"]), scope)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise Unauthorized("the stream token is not valid") from None
        if grant.expires_at <= self._clock():
            raise TokenExpired()
        return grant

    def _sign(self, payload: str) -> str:
        # hmac.digest: OpenSSL's one-shot HMAC, a fifth of hmac.new's cost (a token is checked per request).
        return _b64encode(hmac.digest(self._key, f"{VERSION}.{payload}".encode(), "sha256"))
