"""Who is calling: a tenant's API key, or a stream token scoped to one session.

With `TOKENTAIL_API_KEYS` unset, auth is off and every caller is the tenant `public`.

    API key        Authorization: Bearer <key>        everything, on the tenant's own sessions
    stream token   Authorization: Bearer <token>      read one session (events, WebSocket, state)
                   ?token=<token>                     and refresh the token; a browser EventSource
                                                      cannot send headers, hence the query form.
                                                      A `chat` token also queues and cancels runs
                                                      in its session (browser chat UIs post runs)

API keys are never accepted in the query string, where they would end up in access logs. Another
tenant's session answers 404, exactly like a session that does not exist.
"""

import hmac
import re
from dataclasses import dataclass

from tokentail.gateway import metrics
from tokentail.gateway.access.ids import CHAT_ID_PATTERN, chat_session_id, is_session_id
from tokentail.gateway.access.tokens import Scope, StreamTokens
from tokentail.shared.plumbing.logs import bind
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.client_indexes import chat_branch
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.errors import Forbidden, InvalidInput, SessionNotFound, TokenExpired, Unauthorized
from tokentail.shared.vocabulary.records import PUBLIC_TENANT


@dataclass(frozen=True)
class Caller:
    tenant: str
    session_id: str | None = None  # set for a stream token: the one session it may use
    scope: Scope = "read"  # a stream token's

    @property
    def who(self) -> str:
        """As the request's logs name it: a tenant's key, or a stream token of a session."""
        return f"token:{self.session_id}" if self.session_id else f"tenant:{self.tenant}"

    @property
    def has_api_key(self) -> bool:
        return self.session_id is None

    def require_api_key(self) -> None:
        if not self.has_api_key:
            metrics.AUTH_FAILURES.labels("forbidden").inc()
            raise Forbidden("this needs an API key: a stream token only uses its own session")

    def require_chat(self) -> None:
        """Queueing and cancelling runs: an API key, or a `chat` token (its session is checked apart)."""
        if not self.has_api_key and self.scope != "chat":
            metrics.AUTH_FAILURES.labels("forbidden").inc()
            raise Forbidden("this needs an API key or a chat token: a read token only reads its own session")


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.auth_enabled
        self._keys = [(key.encode(), tenant) for key, tenant in settings.tenants_by_key.items()]
        self.tokens = (
            StreamTokens(settings.secret.get_secret_value(), settings.stream_token_ttl_seconds)
            if settings.secret is not None
            else None
        )

    def authenticate(self, bearer: str | None, query_token: str | None) -> Caller:
        try:
            caller = self._authenticate(bearer, query_token)
        except Unauthorized as exc:
            reason = (
                "expired" if isinstance(exc, TokenExpired) else "missing" if not (bearer or query_token) else "invalid"
            )
            metrics.AUTH_FAILURES.labels(reason).inc()
            raise
        bind(caller=caller.who)  # the request's logs name it, and so does an answer it gives (answer.lua)
        return caller

    async def check_access(self, caller: Caller, session_id: str, store: SessionStore) -> None:
        """Refuse a caller the session unless it is theirs: 404 for another tenant's (as for none at
        all, and whether it still exists or is gone), 403 for a stream token of another session."""
        if not is_session_id(session_id):
            raise SessionNotFound(session_id)
        if self.enabled:
            await self._check_owner(caller, session_id, store)
        bind(session_id=session_id)  # from here on, the request's logs name the session

    async def _check_owner(self, caller: Caller, session_id: str, store: SessionStore) -> None:
        if caller.session_id is not None:
            if caller.session_id != session_id:
                metrics.AUTH_FAILURES.labels("forbidden").inc()
                raise Forbidden("the stream token is for another session")
            return
        tenant = await store.session_owner(session_id)
        if tenant is not None and tenant != caller.tenant:
            raise SessionNotFound(session_id)

    async def chat_session(self, caller: Caller, chat_id: str, store: SessionStore) -> str:
        """The session a chat id a chat UI chose names now, if the caller may use it: the chat's own
        (see `chat_session_id`), or the branch it went on in (a fork of it: gateway/commands/branching.py).
        A token for the chat's own session is one for its branches."""
        session_id = await self.chat_root(caller, chat_id, store)
        return await chat_branch(store.redis, store.keys, store.settings, session_id) or session_id

    async def chat_root(self, caller: Caller, chat_id: str, store: SessionStore) -> str:
        """The chat's own session (see `chat_session_id`), if the caller may use it."""
        if re.fullmatch(CHAT_ID_PATTERN, chat_id) is None:
            raise InvalidInput("a chat id is 1 to 128 characters of A-Z, a-z, 0-9 and _ . : -")
        session_id = chat_session_id(caller.tenant, chat_id)
        await self.check_access(caller, session_id, store)
        if session_id == chat_id and await store.session_owner(session_id) is None:
            # A session is never made at an id a client chose: one tenant could compute another's chat
            # session id and make it first, and the owner's chat would then be another tenant's (404).
            raise SessionNotFound(session_id)
        return session_id

    def _authenticate(self, bearer: str | None, query_token: str | None) -> Caller:
        if not self.enabled:
            return Caller(PUBLIC_TENANT)
        if bearer:
            tenant = self._tenant_of(bearer)
            if tenant is not None:
                return Caller(tenant)
            if ":" in bearer:  # no stream token has one; a `tenant:key` pair of TOKENTAIL_API_KEYS does
                raise Unauthorized(
                    "not a valid API key: send the key alone, `Authorization: Bearer <key>`, not the tenant:key "
                    "pair TOKENTAIL_API_KEYS lists"
                )
            return self._token_caller(bearer)
        if query_token:
            return self._token_caller(query_token)
        raise Unauthorized(
            "send an API key as `Authorization: Bearer <key>`, or a stream token as a bearer or `?token=`"
        )

    def _tenant_of(self, presented: str) -> str | None:
        # Every key is compared, each in constant time, so the time taken says nothing about which
        # key (or how much of one) matched.
        presented_bytes = presented.encode()
        found = None
        for key, tenant in self._keys:
            if hmac.compare_digest(presented_bytes, key):
                found = tenant
        return found

    def _token_caller(self, token: str) -> Caller:
        assert self.tokens is not None  # settings require the secret whenever auth is on
        grant = self.tokens.verify(token)
        return Caller(grant.tenant, grant.session_id, grant.scope)

    def issue_token(self, session_id: str, tenant: str, scope: Scope = "read") -> tuple[str, int] | tuple[None, None]:
        """A stream token for the session and its expiry; none when auth is off (none is needed)."""
        if not self.enabled or self.tokens is None:
            return None, None
        return self.tokens.issue(session_id, tenant, scope)


def bearer_credential(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthorized("the Authorization header must be `Bearer <API key or stream token>`")
    return credential.strip()
