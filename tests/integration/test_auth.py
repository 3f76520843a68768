"""Auth and tenant isolation on every endpoint, for every way a credential can be passed."""

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest
import websockets
from pydantic import SecretStr

from tests.fixtures.stack import Gateway
from tokentail.gateway.access.ids import chat_session_id
from tokentail.gateway.access.tokens import StreamTokens

KEY_A = "acme-key-0123456789abcdef"
KEY_B = "beta-key-0123456789abcdef"
SECRET = "s" * 40
SLOW = {"input": "hi", "model": "scripted", "params": {"tokens": 400, "tokens_per_second": 20}}


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


@pytest.fixture
async def secured(start_gateway: Callable[..., Any]) -> Gateway:
    gateway: Gateway = await start_gateway(
        api_keys=SecretStr(f"acme:{KEY_A},beta:{KEY_B}"), secret=SecretStr(SECRET), stream_token_ttl_seconds=60
    )
    return gateway


@pytest.fixture
async def http(secured: Gateway) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=secured.url, timeout=10) as client:
        yield client


@pytest.fixture
async def session(http: httpx2.AsyncClient) -> dict[str, Any]:
    """A session of tenant acme whose run stays queued (no worker), so its stream stays open."""
    response = await http.post("/v1/sessions", json=SLOW, headers=bearer(KEY_A))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def routes(session_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("POST", f"/v1/sessions/{session_id}/runs", {"input": "more", "multitask": "enqueue"}),
        ("POST", f"/v1/sessions/{session_id}/cancel", None),
        ("POST", f"/v1/sessions/{session_id}/steer", {"input": "shorter"}),
        ("GET", f"/v1/sessions/{session_id}", None),
        ("POST", f"/v1/sessions/{session_id}/token", None),
        ("GET", f"/v1/sessions/{session_id}/events", None),
        ("DELETE", f"/v1/sessions/{session_id}", None),
    ]


async def status_of(http: httpx2.AsyncClient, method: str, path: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
    # Streams are opened and closed at once: only the status and (for errors) the body matter.
    async with http.stream(method, path, json=body, **kwargs) as response:
        if response.status_code >= 400:
            await response.aread()
            return response.status_code, response.json()
        return response.status_code, None


async def test_create_session_needs_an_api_key(http: httpx2.AsyncClient) -> None:
    response = await http.post("/v1/sessions", json=SLOW)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response = await http.post("/v1/sessions", json=SLOW, headers=bearer("not-a-key-of-anyone-here"))
    assert response.status_code == 401 and "not-a-key" not in response.text
    # An API key is never taken from the URL, where access logs would keep it.
    response = await http.post("/v1/sessions", json=SLOW, params={"token": KEY_A})
    assert response.status_code == 401 and KEY_A not in response.text
    response = await http.post("/v1/sessions", json=SLOW, headers={"Authorization": f"Basic {KEY_A}"})
    assert response.status_code == 401


async def test_creating_returns_a_stream_token_scoped_to_the_session(session: dict[str, Any]) -> None:
    assert session["stream_token"].startswith("v1.")
    assert 50 <= session["stream_token_expires_at"] - time.time() <= 61
    grant = StreamTokens(SECRET, 60).verify(session["stream_token"])
    assert (grant.session_id, grant.tenant) == (session["session_id"], "acme")


async def test_every_session_route_refuses_no_credentials_and_bad_ones(
    http: httpx2.AsyncClient, session: dict[str, Any]
) -> None:
    for method, path, body in routes(session["session_id"]):
        for headers in ({}, bearer("wrong-key-wrong-key-wrong")):
            status, error = await status_of(http, method, path, body, headers=headers)
            assert (status, error["error"]["type"]) == (401, "unauthorized"), (method, path, headers)


async def test_another_tenants_session_is_not_found_on_every_route(
    http: httpx2.AsyncClient, session: dict[str, Any]
) -> None:
    for method, path, body in routes(session["session_id"]):
        status, error = await status_of(http, method, path, body, headers=bearer(KEY_B))
        assert (status, error["error"]["type"]) == (404, "session_not_found"), (method, path)
    # ...and the owner still has it, untouched.
    assert (await http.get(f"/v1/sessions/{session['session_id']}", headers=bearer(KEY_A))).status_code == 200


async def test_another_tenants_gone_session_is_not_found_either(
    http: httpx2.AsyncClient, session: dict[str, Any]
) -> None:
    # A 410 would tell another tenant that this id existed: it gets what a random id gets.
    assert (await http.delete(f"/v1/sessions/{session['session_id']}", headers=bearer(KEY_A))).status_code == 204
    for method, path, body in routes(session["session_id"]):
        status, error = await status_of(http, method, path, body, headers=bearer(KEY_B))
        assert (status, error["error"]["type"]) == (404, "session_not_found"), (method, path)
        status, error = await status_of(http, method, path, body, headers=bearer(KEY_A))
        assert (status, error["error"]["type"]) == (410, "session_expired"), (method, path)


async def test_the_owner_reaches_every_route_with_its_key(http: httpx2.AsyncClient, session: dict[str, Any]) -> None:
    expected = {"runs": 202, "cancel": 202, "steer": 202, "token": 200, "events": 200}  # (steers the run in line)
    for method, path, body in routes(session["session_id"]):
        status, _ = await status_of(http, method, path, body, headers=bearer(KEY_A))
        assert status == expected.get(path.rsplit("/", 1)[-1], 204 if method == "DELETE" else 200), (method, path)


@pytest.mark.parametrize("how", ["query", "bearer"])
async def test_a_stream_token_reads_its_session_and_nothing_else(
    http: httpx2.AsyncClient, session: dict[str, Any], how: str
) -> None:
    token, session_id = session["stream_token"], session["session_id"]
    kwargs: dict[str, Any] = {"params": {"token": token}} if how == "query" else {"headers": bearer(token)}
    allowed = {"events": 200, "token": 200}
    for method, path, body in routes(session_id):
        status, error = await status_of(http, method, path, body, **kwargs)
        last = path.rsplit("/", 1)[-1]
        if method == "GET" and last == session_id:
            assert status == 200
        elif last in allowed:
            assert status == allowed[last], (method, path)
        else:  # runs, cancel, steer, delete need an API key
            assert (status, error["error"]["type"]) == (403, "forbidden"), (method, path)
    other = (await http.post("/v1/sessions", json=SLOW, headers=bearer(KEY_A))).json()["session_id"]
    status, error = await status_of(http, "GET", f"/v1/sessions/{other}/events", None, **kwargs)
    assert (status, error["error"]["type"]) == (403, "forbidden")
    status, error = await status_of(http, "POST", "/v1/sessions", SLOW, **kwargs)
    assert status in (401, 403)  # a token never creates sessions (in a query it is not even looked at)


async def test_the_stream_delivers_events_with_a_query_token(http: httpx2.AsyncClient, session: dict[str, Any]) -> None:
    async with http.stream("GET", session["events_url"], params={"token": session["stream_token"]}) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("event: run.queued"):
                break


async def test_expired_and_tampered_tokens_are_refused_with_clear_errors(
    http: httpx2.AsyncClient, session: dict[str, Any]
) -> None:
    path = f"/v1/sessions/{session['session_id']}/events"
    expired, _ = StreamTokens(SECRET, 10, clock=lambda: time.time() - 100).issue(session["session_id"], "acme")
    status, error = await status_of(http, "GET", path, None, params={"token": expired})
    assert (status, error["error"]["type"]) == (401, "token_expired")
    assert "refresh" in error["error"]["message"]
    # An expired token cannot refresh itself either.
    status, error = await status_of(
        http, "POST", f"/v1/sessions/{session['session_id']}/token", None, params={"token": expired}
    )
    assert (status, error["error"]["type"]) == (401, "token_expired")
    forged, _ = StreamTokens("x" * 40, 60).issue(session["session_id"], "acme")  # another secret
    tampered = session["stream_token"][:-2] + ("AA" if not session["stream_token"].endswith("AA") else "BB")
    for token in (forged, tampered, "v1.e30.", "garbage"):
        status, error = await status_of(http, "GET", path, None, params={"token": token})
        assert (status, error["error"]["type"]) == (401, "unauthorized"), token


async def test_a_stream_token_refreshes_itself_before_it_expires(
    http: httpx2.AsyncClient, session: dict[str, Any]
) -> None:
    response = await http.post(f"/v1/sessions/{session['session_id']}/token", headers=bearer(session["stream_token"]))
    assert response.status_code == 200
    fresh = response.json()
    assert fresh["stream_token_expires_at"] >= session["stream_token_expires_at"]
    assert StreamTokens(SECRET, 60).verify(fresh["stream_token"]).session_id == session["session_id"]


@pytest.mark.parametrize("body", [None, {}, {"scope": None}], ids=["no-body", "empty-body", "null-scope"])
async def test_a_chat_token_refreshed_without_naming_a_scope_stays_a_chat_token(
    http: httpx2.AsyncClient, body: dict[str, Any] | None
) -> None:
    made = await http.post("/v1/sessions", json={"token_scope": "chat"}, headers=bearer(KEY_A))
    session_id, chat = made.json()["session_id"], made.json()["stream_token"]
    refreshed = await http.post(f"/v1/sessions/{session_id}/token", json=body, headers=bearer(chat))
    assert (refreshed.status_code, refreshed.json()["stream_token_scope"]) == (200, "chat")
    sent = await http.post(
        f"/v1/sessions/{session_id}/runs", json={"input": "hi"}, headers=bearer(refreshed.json()["stream_token"])
    )
    assert sent.status_code == 202  # it may still chat
    key_refreshes: list[dict[str, Any] | None] = [None, {}]
    for key_refresh in key_refreshes:  # an API key's refresh gives a read token unless it asks for chat
        read = await http.post(f"/v1/sessions/{session_id}/token", json=key_refresh, headers=bearer(KEY_A))
        assert read.json()["stream_token_scope"] == "read"


async def test_a_tenant_key_pair_sent_as_the_key_is_told_to_send_the_key_alone(http: httpx2.AsyncClient) -> None:
    answer = await http.post("/v1/sessions", json={"input": "hi"}, headers=bearer(f"acme:{KEY_A}"))
    assert answer.status_code == 401
    assert "send the key alone" in answer.json()["error"]["message"]


async def ws_exchange(url: str, headers: dict[str, str] | None = None, send: dict[str, Any] | None = None) -> list[Any]:
    """The first message; then, after `send`, the server's answer to it, or else the close code."""
    received: list[Any] = []
    async with websockets.connect(url, additional_headers=headers or {}) as ws:
        try:
            received.append(json.loads(await ws.recv()))
            if send is not None:
                await ws.send(json.dumps(send))
                while (message := json.loads(await ws.recv())).get("type") not in ("ack", "error"):
                    pass
                received.append(message)
            else:
                await ws.recv()  # a refusal closes the socket right after its error message
        except websockets.ConnectionClosed as closed:
            received.append(closed.rcvd.code if closed.rcvd else None)
    return received


def ws_url(gateway: Gateway, session_id: str, **query: str) -> str:
    base = gateway.url.replace("http://", "ws://") + f"/v1/sessions/{session_id}/ws"
    return base + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


async def test_websocket_refuses_missing_bad_and_foreign_credentials(secured: Gateway, session: dict[str, Any]) -> None:
    session_id = session["session_id"]
    for url, headers, code, type_ in [
        (ws_url(secured, session_id), None, 4401, "unauthorized"),
        (ws_url(secured, session_id, token="garbage"), None, 4401, "unauthorized"),
        (ws_url(secured, session_id), bearer(KEY_B), 4404, "session_not_found"),
        (ws_url(secured, session_id, token=KEY_A), None, 4401, "unauthorized"),  # keys never in URLs
    ]:
        error, close_code = await ws_exchange(url, headers)
        assert (error["error"]["type"], close_code) == (type_, code), url


@pytest.mark.parametrize("how", ["query", "bearer"])
async def test_websocket_with_a_stream_token_reads_but_may_not_run_or_cancel(
    secured: Gateway, session: dict[str, Any], how: str
) -> None:
    token = session["stream_token"]
    url = ws_url(secured, session["session_id"], **({"token": token} if how == "query" else {}))
    headers = bearer(token) if how == "bearer" else None
    for request in ({"type": "run", "input": "x", "multitask": "enqueue"}, {"type": "cancel"}):
        first, answer = await ws_exchange(url, headers, send=request)
        assert first["event"] == "run.queued"
        assert answer["type"] == "error" and answer["error"]["type"] == "forbidden"
    first, answer = await ws_exchange(url, headers, send={"type": "resume", "last_event_id": 0})
    assert answer == {"type": "ack", "request": "resume", "last_event_id": 0}


async def test_websocket_with_the_api_key_may_run(secured: Gateway, session: dict[str, Any]) -> None:
    url = ws_url(secured, session["session_id"])
    _, answer = await ws_exchange(url, bearer(KEY_A), send={"type": "run", "input": "x", "multitask": "enqueue"})
    assert answer["type"] == "ack" and answer["run_id"].startswith("r_")


CHOICES = [
    ("model", {"model": "scripted"}),
    ("params", {"params": {"tokens": 1_000_000}}),
    ("interrupt", {"multitask": "interrupt"}),
]


@pytest.mark.parametrize(("name", "choice"), CHOICES, ids=[name for name, _ in CHOICES])
async def test_a_chat_token_runs_the_sessions_model_and_params_unless_the_operator_lets_it_choose(
    secured: Gateway, http: httpx2.AsyncClient, start_gateway: Callable[..., Any], name: str, choice: dict[str, Any]
) -> None:
    made = await http.post("/v1/sessions", json={**SLOW, "token_scope": "chat"}, headers=bearer(KEY_A))
    session_id, chat = made.json()["session_id"], made.json()["stream_token"]
    request = {"input": "more", "multitask": "enqueue", **choice}
    refused = await http.post(f"/v1/sessions/{session_id}/runs", json=request, headers=bearer(chat))
    assert (refused.status_code, refused.json()["error"]["type"]) == (403, "forbidden")
    assert name in refused.json()["error"]["message"]
    _, answer = await ws_exchange(ws_url(secured, session_id, token=chat), send={"type": "run", **request})
    assert (answer["type"], answer["error"]["type"]) == ("error", "forbidden")
    runs = (await http.get(f"/v1/sessions/{session_id}", headers=bearer(KEY_A))).json()
    assert [run["status"] for run in runs["runs"]] == ["queued"]  # nothing queued, nothing interrupted
    plain = await http.post(f"/v1/sessions/{session_id}/runs", json={"input": "more", "multitask": "enqueue"},
                            headers=bearer(chat))  # fmt: skip
    assert plain.status_code == 202  # the session's own choices it may still run
    assert (await http.post(f"/v1/sessions/{session_id}/runs", json=request, headers=bearer(KEY_A))).status_code == 202

    lenient: Gateway = await start_gateway(
        api_keys=SecretStr(f"acme:{KEY_A}"), secret=SecretStr(SECRET), chat_token_may_set=[name]
    )
    async with httpx2.AsyncClient(base_url=lenient.url, timeout=10) as other:
        allowed = await other.post(f"/v1/sessions/{session_id}/runs", json=request, headers=bearer(chat))
        assert allowed.status_code == 202, allowed.text


async def test_a_chat_token_s_runs_are_its_session_s_user_s(secured: Gateway, http: httpx2.AsyncClient) -> None:
    made = await http.post("/v1/sessions", json={**SLOW, "user": "ann", "token_scope": "chat"}, headers=bearer(KEY_A))
    session_id, chat = made.json()["session_id"], made.json()["stream_token"]
    url = f"/v1/sessions/{session_id}/runs"
    for other in ("bob", "a-new-one-each-time"):
        request = {"input": "more", "multitask": "enqueue", "user": other}
        refused = await http.post(url, json=request, headers=bearer(chat))
        assert (refused.status_code, refused.json()["error"]["type"]) == (403, "forbidden"), refused.text
        _, answer = await ws_exchange(ws_url(secured, session_id, token=chat), send={"type": "run", **request})
        assert (answer["type"], answer["error"]["type"]) == ("error", "forbidden")
    runs = (await http.get(f"/v1/sessions/{session_id}", headers=bearer(KEY_A))).json()["runs"]
    assert len(runs) == 1  # nothing queued
    own = {"input": "more", "multitask": "enqueue", "user": "ann"}
    assert (await http.post(url, json=own, headers=bearer(chat))).status_code == 202  # its own user it may name
    assert (await http.post(url, json={**own, "user": "bob"}, headers=bearer(KEY_A))).status_code == 202  # a key may


@pytest.mark.ai_sdk
@pytest.mark.ag_ui
async def test_a_tenant_cannot_make_another_tenants_chat_session_first(http: httpx2.AsyncClient) -> None:
    # Anyone can compute the session id of acme's chat "support-7"; beta sends it as its own chat id.
    squatted = chat_session_id("acme", "support-7")
    by_beta = [
        await http.post("/v1/sessions", json={"chat_id": squatted}, headers=bearer(KEY_B)),
        await http.post(
            "/v1/ai-sdk/chat",
            json={"id": squatted, "messages": [{"id": "m", "role": "user", "parts": [{"type": "text", "text": "x"}]}]},
            headers=bearer(KEY_B),
        ),
        await http.post(
            "/v1/ag-ui",
            json={"threadId": squatted, "runId": "r", "state": {}, "tools": [], "context": [], "forwardedProps": {},
                  "messages": [{"id": "u", "role": "user", "content": "x"}]},
            headers=bearer(KEY_B),
        ),
    ]  # fmt: skip
    assert [(answer.status_code, answer.json()["error"]["type"]) for answer in by_beta] == 3 * [
        (404, "session_not_found")
    ]
    owner = await http.post("/v1/sessions", json={"chat_id": "support-7"}, headers=bearer(KEY_A))
    assert (owner.status_code, owner.json()["session_id"]) == (201, squatted)
    # A session id of one's own is still a chat id (200: the existing one).
    again = await http.post("/v1/sessions", json={"chat_id": squatted}, headers=bearer(KEY_A))
    assert (again.status_code, again.json()["session_id"]) == (200, squatted)
