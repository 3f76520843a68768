"""Who may use the console and `/v1/admin`: an operator's admin key (`TOKENTAIL_ADMIN_KEYS`, every
tenant), or a tenant's API key (its own tenant only; every tenant's, for the tenants listed in
`TOKENTAIL_ADMIN_TENANTS`). A stream token reads nothing here. With no key configured at all (auth off,
as `tokentail dev`), the console is open to callers on this machine only: the socket's own peer, or a
client a proxy named in `TOKENTAIL_TRUSTED_PROXIES` forwards, never a header a client wrote
(gateway/access/peers.py decides)."""

import hmac
from dataclasses import dataclass

from tokentail.gateway.access.tokens import StreamTokens
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.vocabulary.errors import Forbidden, Unauthorized


@dataclass(frozen=True, slots=True)
class Admin:
    who: str  # what the logs of its actions name: an admin key's name, `tenant:<t>`, or `local`
    tenant: str | None  # the one tenant it sees; None: every tenant


class AdminAuth:
    def __init__(self, settings: Settings) -> None:
        self.required = settings.auth_enabled or settings.admin_keys is not None
        self._admins = [(key.encode(), name) for key, name in settings.admins_by_key.items()]
        self._tenants = [(key.encode(), tenant) for key, tenant in settings.tenants_by_key.items()]
        self._every_tenant = set(settings.admin_tenants)
        self._tokens = (
            StreamTokens(settings.secret.get_secret_value(), settings.stream_token_ttl_seconds)
            if settings.secret is not None
            else None
        )

    def admin_of(self, bearer: str | None, this_machine: bool) -> Admin:
        if not self.required:
            if this_machine:
                return Admin("local", None)
            raise Forbidden(
                "the console is open on this machine only while auth is off: set TOKENTAIL_ADMIN_KEYS "
                "(or TOKENTAIL_API_KEYS) to reach it from elsewhere"
            )
        if not bearer:
            raise Unauthorized("the console needs an admin key or a tenant's API key: Authorization: Bearer <key>")
        given = bearer.encode()
        # Every key is compared, whichever matches: the time taken tells nothing of which one did.
        found: Admin | None = None
        for key, name in self._admins:
            if hmac.compare_digest(key, given):
                found = Admin(name, None)
        for key, tenant in self._tenants:
            if hmac.compare_digest(key, given):
                found = Admin(f"tenant:{tenant}", None if tenant in self._every_tenant else tenant)
        if found is not None:
            return found
        if self._tokens is not None and _is_stream_token(self._tokens, bearer):
            raise Forbidden("a stream token reads its own session only: the console needs an admin or API key")
        raise Unauthorized("invalid key")


def _is_stream_token(tokens: StreamTokens, bearer: str) -> bool:
    try:
        tokens.verify(bearer)
    except Unauthorized:
        return False
    return True
