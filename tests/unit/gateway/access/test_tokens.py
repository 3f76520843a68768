"""gateway/access/tokens.py: signed, expiring stream grants that any replica sharing the secret can check."""

import base64
import json

import pytest

from tokentail.gateway.access.tokens import StreamGrant, StreamTokens
from tokentail.shared.vocabulary.errors import TokenExpired, Unauthorized

SECRET = "s" * 40


class Clock:
    def __init__(self, now: float = 1_700_000_000.5) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _payload(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def _with_payload(token: str, claims: object) -> str:
    """The token with its payload replaced (and its signature kept)."""
    version, _, signature = token.split(".")
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{version}.{payload}.{signature}"


def test_a_token_grants_its_session_and_tenant_until_its_expiry() -> None:
    clock = Clock()
    tokens = StreamTokens(SECRET, 900, clock=clock)
    token, expires_at = tokens.issue("s_abc", "acme")
    assert expires_at == 1_700_000_000 + 900  # whole seconds
    assert token.startswith("v1.") and token.count(".") == 2
    assert _payload(token) == {"sid": "s_abc", "ten": "acme", "exp": expires_at}
    assert tokens.verify(token) == StreamGrant("s_abc", "acme", expires_at)
    clock.now = expires_at - 0.001
    assert tokens.verify(token).session_id == "s_abc"


def test_a_token_is_expired_from_its_expiry_on() -> None:
    clock = Clock()
    tokens = StreamTokens(SECRET, 60, clock=clock)
    token, expires_at = tokens.issue("s_abc", "acme")
    clock.now = expires_at
    with pytest.raises(TokenExpired, match="refresh it"):
        tokens.verify(token)


def test_another_replica_with_the_same_secret_accepts_it_and_one_with_another_does_not() -> None:
    token, _ = StreamTokens(SECRET, 900).issue("s_abc", "acme")
    assert StreamTokens(SECRET, 10).verify(token).tenant == "acme"  # the ttl only matters when issuing
    with pytest.raises(Unauthorized, match="not valid") as refused:
        StreamTokens("t" * 40, 900).verify(token)
    assert not isinstance(refused.value, TokenExpired)


def test_a_changed_payload_or_signature_is_refused() -> None:
    tokens = StreamTokens(SECRET, 900)
    token, expires_at = tokens.issue("s_abc", "acme")
    forged = _with_payload(token, {"sid": "s_other", "ten": "acme", "exp": expires_at})
    longer = _with_payload(token, {"sid": "s_abc", "ten": "acme", "exp": expires_at + 10**6})
    version, payload, signature = token.split(".")
    flipped = f"{version}.{payload}.{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}"
    for bad in (forged, longer, flipped, f"v2.{payload}.{signature}", f"{payload}.{signature}"):
        with pytest.raises(Unauthorized, match="not valid"):
            tokens.verify(bad)


@pytest.mark.parametrize(
    "token",
    ["", "v1", "v1.", "v1..", "garbage", "v1.!!!.x", "v1.e30.e30"],
)
def test_malformed_tokens_are_refused_not_crashed_on(token: str) -> None:
    with pytest.raises(Unauthorized, match="not valid"):
        StreamTokens(SECRET, 900).verify(token)


@pytest.mark.parametrize(
    "claims",
    [
        {"sid": "s_abc", "ten": "acme"},  # no expiry
        {"sid": "s_abc", "exp": 2_000_000_000},  # no tenant
        {"sid": "s_abc", "ten": "acme", "exp": "soon"},
        [1, 2, 3],
        "a string",
    ],
    ids=["no-exp", "no-tenant", "exp-not-a-number", "a-list", "a-string"],
)
def test_a_correctly_signed_payload_with_bad_claims_is_refused(claims: object) -> None:
    tokens = StreamTokens(SECRET, 900)
    # Sign it as the gateway would: only a holder of the secret could make these.
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    token = f"v1.{payload}.{tokens._sign(payload)}"
    with pytest.raises(Unauthorized, match="not valid"):
        tokens.verify(token)


def test_a_chat_token_carries_its_scope_and_a_read_token_stays_as_tokens_were() -> None:
    tokens = StreamTokens(SECRET, 900)
    chat, _ = tokens.issue("s_abc", "acme", "chat")
    read, _ = tokens.issue("s_abc", "acme")
    assert tokens.verify(chat).scope == "chat"
    assert tokens.verify(read).scope == "read"
    assert "scp" not in _payload(read)  # tokens issued before scopes existed read the same


def test_a_scope_cannot_be_added_or_made_up() -> None:
    tokens = StreamTokens(SECRET, 900)
    read, _ = tokens.issue("s_abc", "acme")
    with pytest.raises(Unauthorized):
        tokens.verify(_with_payload(read, {**_payload(read), "scp": "chat"}))  # the signature no longer fits
    # Signed by us, but with a scope we never give out (a future version's, say): refused, not widened.
    odd = StreamTokens(SECRET, 900)
    forged_claims = {**_payload(read), "scp": "admin"}
    payload = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=").decode()
    signed = f"v1.{payload}.{odd._sign(payload)}"
    with pytest.raises(Unauthorized):
        odd.verify(signed)
