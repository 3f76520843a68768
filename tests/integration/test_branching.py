"""Conversations that branch, on a real gateway, worker and Redis: the native fork
(`POST /v1/sessions/{id}/fork`), the Responses API's `previous_response_id` naming an older
response (through the official `openai` SDK), and the chat UIs' message lists that regenerate or
edit a turn (the real npm clients do the same in tests/node)."""

import asyncio
import types
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import openai
import pytest
import websockets
from openai import AsyncOpenAI
from pydantic import SecretStr
from redis.asyncio import Redis

from tests.agents.arithmetic_agent import HOLD
from tests.fixtures.stack import Gateway
from tests.integration.test_chat_protocols import ChatSocket, SseReader, ws_url
from tests.support.gates import Gates
from tests.support.waiting import eventually
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.keys import Keys
from tokentail.shared.store.reads import SessionStore

KEY = "acme-key-0123456789abcdef"
OTHER_KEY = "beta-key-0123456789abcdef"
AUTH = {"api_keys": SecretStr(f"acme:{KEY},beta:{OTHER_KEY}"), "secret": SecretStr("s" * 40)}
AGENTS = {"arithmetic": "tests.agents.arithmetic_agent:arithmetic", "two": "tests.agents.asking_agent:two_questions"}


@pytest.fixture
async def gateway(start_gateway: Callable[..., Any], start_worker: Callable[..., Any]) -> Gateway:
    await start_worker(agents=AGENTS, **AUTH)
    gateway: Gateway = await start_gateway(agents=AGENTS, **AUTH)
    return gateway


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx2.AsyncClient]:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx2.AsyncClient(base_url=gateway.url, headers=headers, timeout=20) as client:
        yield client


async def ended(http: httpx2.AsyncClient, session_id: str) -> dict[str, Any]:
    """The session once no run of it is queued or going."""

    async def idle() -> bool:
        state: dict[str, Any] = (await http.get(f"/v1/sessions/{session_id}")).json()
        return bool(state["status"] == "idle")

    await eventually(idle, within=20)
    state: dict[str, Any] = (await http.get(f"/v1/sessions/{session_id}")).json()
    return state


async def ask(http: httpx2.AsyncClient, session_id: str, text: str) -> dict[str, Any]:
    """The run `text` became, once it ended."""
    queued = await http.post(f"/v1/sessions/{session_id}/runs", json={"input": text})
    assert queued.status_code == 202, queued.text
    run_id = queued.json()["run_id"]
    state = await ended(http, session_id)
    run: dict[str, Any] = next(run for run in state["runs"] if run["run_id"] == run_id)
    return run


async def conversation(http: httpx2.AsyncClient) -> tuple[str, list[dict[str, Any]]]:
    """A session of two turns: "What is 2 + 3?" (5), "and times ten?" (50)."""
    made = await http.post("/v1/sessions", json={"agent": "arithmetic", "input": "What is 2 + 3?"})
    session_id: str = made.json()["session_id"]
    state = await ended(http, session_id)
    second = await ask(http, session_id, "and times ten?")
    return session_id, [state["runs"][0], second]


async def stored(redis: Redis, settings: Settings, session_id: str) -> list[tuple[int, bytes, bytes, int]]:
    events = await SessionStore(redis, settings).read_hot(session_id, 0, 10_000)
    return [(event.seq, event.type, event.data, event.ts_us) for event in events]


async def sessions_in(redis: Redis, settings: Settings) -> dict[bytes, bytes | None]:
    """Every key of every session, with the value of the chat pointers among them: what a refused
    request must leave as it was."""
    keys = await redis.keys(f"{settings.key_prefix}:{{s_*")
    return {key: await redis.get(key) if key.endswith(b":branch") else None for key in keys}


async def test_a_fork_holds_the_events_up_to_a_turn_and_goes_on_from_there(
    http: httpx2.AsyncClient, redis: Redis, settings: Settings
) -> None:
    source, (first, second) = await conversation(http)
    assert (first["output"], second["output"]) == ("5", "50")
    before = (await http.get(f"/v1/sessions/{source}")).json()
    source_events = await stored(redis, settings, source)

    forked = await http.post(f"/v1/sessions/{source}/fork", params={"after": first["finished_seq"]})
    assert forked.status_code == 201, forked.text
    fork = forked.json()
    fork_id = fork["session_id"]
    assert fork_id != source and fork["status"] == "idle" and fork["agent"] == "arithmetic"
    assert fork["forked_from"] == {"session_id": source, "event_id": first["finished_seq"]}
    assert fork["last_event_id"] == first["finished_seq"]
    assert [run["run_id"] for run in fork["runs"]] == [first["run_id"]]
    assert fork == (await http.get(f"/v1/sessions/{fork_id}")).json()  # as GET shows it
    # The same events under the same ids (and times), up to the turn's end.
    assert await stored(redis, settings, fork_id) == source_events[: first["finished_seq"]]

    third = await ask(http, fork_id, "and times two?")
    assert third["output"] == "10"  # the fork's history is the first turn only
    assert third["queued_seq"] == first["finished_seq"] + 1  # its ids go on from the copy
    assert [turn["content"] for turn in (await ended(http, fork_id))["transcript"]] == [
        "What is 2 + 3?",
        "5",
        "and times two?",
        "10",
    ]
    # The source is untouched.
    assert (await http.get(f"/v1/sessions/{source}")).json() == before
    assert await stored(redis, settings, source) == source_events

    # A fork of the fork: its lineage goes back to the first session.
    again = (await http.post(f"/v1/sessions/{fork_id}/fork", params={"after": third["finished_seq"]})).json()
    assert again["forked_from"] == {"session_id": fork_id, "event_id": third["finished_seq"]}
    assert [run["run_id"] for run in again["runs"]] == [first["run_id"], third["run_id"]]
    assert (await ask(http, again["session_id"], "and plus 3?"))["output"] == "13"

    # Before the first turn: a session of its own with the same record and nothing in it.
    empty = (await http.post(f"/v1/sessions/{source}/fork", params={"after": 0})).json()
    assert (empty["runs"], empty["last_event_id"], empty["agent"]) == ([], 0, "arithmetic")
    assert (await ask(http, empty["session_id"], "What is 4 + 4?"))["output"] == "8"


async def test_a_fork_is_refused_inside_a_turn_across_tenants_and_past_the_stream(
    gateway: Gateway, http: httpx2.AsyncClient, redis: Redis, settings: Settings, gates: Gates
) -> None:
    source, (first, second) = await conversation(http)
    inside = first["finished_seq"] - 1
    refused = await http.post(f"/v1/sessions/{source}/fork", params={"after": inside})
    assert refused.status_code == 422
    message = refused.json()["error"]["message"]
    assert f"the nearest are 0 and {first['finished_seq']}" in message, message
    past = await http.post(f"/v1/sessions/{source}/fork", params={"after": second["finished_seq"] + 5})
    assert past.status_code == 422 and "last event" in past.json()["error"]["message"]
    assert (await http.post(f"/v1/sessions/{source}/fork", params={"after": -1})).status_code == 422
    assert (await http.post(f"/v1/sessions/{source}/fork")).status_code == 422  # `after` is needed

    async with httpx2.AsyncClient(base_url=gateway.url, timeout=10) as other:
        answer = await other.post(
            f"/v1/sessions/{source}/fork",
            params={"after": 0},
            headers={"Authorization": f"Bearer {OTHER_KEY}"},
        )
        assert answer.status_code == 404  # another tenant's session, as one that does not exist
        token = (await http.post(f"/v1/sessions/{source}/token", json={"scope": "chat"})).json()["stream_token"]
        answer = await other.post(
            f"/v1/sessions/{source}/fork", params={"after": 0}, headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 403  # forking makes a session: an API key's

    # A run still going cannot be forked mid-way (it waits at its gate: its agent answers at once).
    held = await http.post(f"/v1/sessions/{source}/runs", json={"input": f"and times two?{HOLD}"})
    running = held.json()["run_id"]
    await eventually(lambda: gates.reached(running) == [1], what="the run at its gate")
    state = (await http.get(f"/v1/sessions/{source}")).json()
    going = await http.post(f"/v1/sessions/{source}/fork", params={"after": state["last_event_id"]})
    assert going.status_code == 422 and f"run {running} is going" in going.json()["error"]["message"]
    await http.post(f"/v1/sessions/{source}/cancel")
    await ended(http, source)

    # Events the stream no longer holds (trimmed past its retention) cannot be copied.
    await redis.xtrim(Keys(settings.key_prefix).session(source).events, minid="3-0", approximate=False)
    trimmed = await http.post(f"/v1/sessions/{source}/fork", params={"after": first["finished_seq"]})
    assert trimmed.status_code == 422 and "no longer holds" in trimmed.json()["error"]["message"]
    assert (await http.post(f"/v1/sessions/{source}/fork", params={"after": 0})).status_code == 201


async def test_a_fork_sent_again_with_its_idempotency_key_is_the_same_fork(http: httpx2.AsyncClient) -> None:
    source, (first, _) = await conversation(http)
    headers = {"Idempotency-Key": "fork-once"}
    made = [
        (await http.post(f"/v1/sessions/{source}/fork", params={"after": first["finished_seq"]}, headers=headers))
        for _ in range(2)
    ]
    assert [answer.status_code for answer in made] == [201, 201]
    assert made[0].json()["session_id"] == made[1].json()["session_id"]


# -- the Responses API ------------------------------------------------------------------------------


@pytest.fixture
async def sdk(gateway: Gateway) -> AsyncIterator[AsyncOpenAI]:
    client = AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0, timeout=20)
    yield client
    await client.close()


@pytest.mark.responses
async def test_an_older_previous_response_id_branches_the_conversation(sdk: AsyncOpenAI) -> None:
    r1 = await sdk.responses.create(model="arithmetic", input="what is 2 + 3")
    r2 = await sdk.responses.create(model="arithmetic", input="and times ten?", previous_response_id=r1.id)
    r3 = await sdk.responses.create(model="arithmetic", input="and times two?", previous_response_id=r1.id)
    assert (r1.output_text, r2.output_text, r3.output_text) == ("5", "50", "10")
    assert r2.previous_response_id == r1.id
    assert r3.previous_response_id == r1.id  # the id the client sent, not the branch's copy of it
    assert (await sdk.responses.retrieve(r3.id)).previous_response_id == r1.id
    # Each branch goes on from its own latest; the first conversation is untouched.
    r4 = await sdk.responses.create(model="arithmetic", input="and times ten?", previous_response_id=r3.id)
    r5 = await sdk.responses.create(model="arithmetic", input="and plus 1?", previous_response_id=r2.id)
    assert (r4.output_text, r5.output_text) == ("100", "51")
    assert r4.previous_response_id == r3.id and (await sdk.responses.retrieve(r2.id)).output_text == "50"
    # The branch before the second turn, streamed.
    async with sdk.responses.stream(model="arithmetic", input="and minus 1?", previous_response_id=r1.id) as stream:
        streamed = await stream.get_final_response()
    assert streamed.output_text == "4" and streamed.previous_response_id == r1.id


@pytest.mark.responses
async def test_a_branching_response_refused_for_its_params_makes_no_branch(
    sdk: AsyncOpenAI, redis: Redis, settings: Settings
) -> None:
    r1 = await sdk.responses.create(model="arithmetic", input="what is 2 + 3")
    await sdk.responses.create(model="arithmetic", input="and times ten?", previous_response_id=r1.id)
    before = await sessions_in(redis, settings)
    with pytest.raises(openai.UnprocessableEntityError) as refused:  # Anthropic's API takes no temperature
        await sdk.responses.create(
            model="anthropic:claude-haiku-4-5", input="and times two?", previous_response_id=r1.id, temperature=0.5
        )
    assert "temperature" in refused.value.message
    assert await sessions_in(redis, settings) == before


@pytest.mark.responses
async def test_a_response_that_ended_at_a_question_the_run_went_on_from_is_not_branched(sdk: AsyncOpenAI) -> None:
    asked = await sdk.responses.create(model="two", input="go")
    call: Any = asked.output[-1]
    answer: list[Any] = [{"type": "function_call_output", "call_id": call.call_id, "output": "blue"}]
    second = await sdk.responses.create(model="two", input=answer, previous_response_id=asked.id)
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        await sdk.responses.create(model="two", input="something else", previous_response_id=asked.id)
    assert f"a new message goes after the run's last response, {second.id}" in refused.value.message


# -- the chat UIs' message lists ----------------------------------------------------------------------


def said(text: str, message_id: str, role: str = "user") -> dict[str, Any]:
    return {"id": message_id, "role": role, "parts": [{"type": "text", "text": text}]}


async def chat(http: httpx2.AsyncClient, chat_id: str, messages: list[dict[str, Any]], **body: Any) -> str:
    """What the chat answered (its text), sent as useChat sends: the whole message list."""
    request = {"id": chat_id, "messages": messages, "trigger": "submit-message", **body}
    async with http.stream("POST", "/v1/ai-sdk/chat", json=request) as response:
        assert response.status_code == 200, await response.aread()
        frames = await SseReader(response).read()
    return "".join(data["delta"] for _, data in frames if data and data["type"] == "text-delta")


@pytest.mark.ai_sdk
async def test_a_chat_s_regenerated_and_edited_turns_branch_and_it_goes_on_in_its_branch(
    http: httpx2.AsyncClient,
) -> None:
    await http.post("/v1/sessions", json={"chat_id": "sums", "agent": "arithmetic"})
    q1, q2 = said("What is 2 + 3?", "u1"), said("and times ten?", "u2")
    assert await chat(http, "sums", [q1]) == "5"
    a1 = (await http.get("/v1/ai-sdk/chat/sums/messages")).json()[1]
    assert await chat(http, "sums", [q1, a1, q2]) == "50"
    # regenerate(): the list ends at the second question again.
    assert await chat(http, "sums", [q1, a1, q2], trigger="regenerate-message") == "50"
    # An edit of the second question.
    edited = said("and times two?", "u2")
    assert await chat(http, "sums", [q1, a1, edited], messageId="u2") == "10"
    # A reload shows the branch the chat is on: the four messages the page shows.
    messages = (await http.get("/v1/ai-sdk/chat/sums/messages")).json()
    texts = ["".join(part["text"] for part in message["parts"]) for message in messages]
    assert texts == ["What is 2 + 3?", "5", "and times two?", "10"]
    # It goes on there, and its session names where it came from.
    assert await chat(http, "sums", [q1, a1, edited, messages[3], said("and plus 1?", "u3")]) == "11"
    session = (await http.post("/v1/sessions", json={"chat_id": "sums"})).json()["session_id"]
    state = (await http.get(f"/v1/sessions/{session}")).json()
    assert state["forked_from"]["event_id"] == state["runs"][0]["finished_seq"]


@pytest.mark.ag_ui
async def test_an_ag_ui_thread_s_edited_turn_branches(http: httpx2.AsyncClient) -> None:
    def user(text: str, message_id: str) -> dict[str, Any]:
        return {"id": message_id, "role": "user", "content": text}

    async def run(messages: list[dict[str, Any]]) -> str:
        body = {"threadId": "thread", "runId": "x", "state": {}, "messages": messages, "tools": [], "context": []}
        async with http.stream("POST", "/v1/ag-ui", json={**body, "forwardedProps": {}}) as response:
            assert response.status_code == 200, await response.aread()
            frames = await SseReader(response).read()
        return "".join(data["delta"] for _, data in frames if data and data["type"] == "TEXT_MESSAGE_CONTENT")

    await http.post("/v1/sessions", json={"chat_id": "thread", "agent": "arithmetic"})
    q1 = user("What is 2 + 3?", "u1")
    assert await run([q1]) == "5"
    a1 = {"id": "text-4", "role": "assistant", "content": "5"}
    assert await run([q1, a1, user("and times ten?", "u2")]) == "50"
    assert await run([q1, a1, user("and times two?", "u2")]) == "10"
    assert await run([q1, a1, user("and times two?", "u2"), {"id": "t", "role": "assistant", "content": "10"},
                      user("and plus 1?", "u3")]) == "11"  # fmt: skip


@pytest.mark.ag_ui
async def test_one_branching_ag_ui_post_sent_twice_at_once_makes_one_fork_and_one_run(
    http: httpx2.AsyncClient, redis: Redis, settings: Settings
) -> None:
    def user(text: str, message_id: str) -> dict[str, Any]:
        return {"id": message_id, "role": "user", "content": text}

    async def run(messages: list[dict[str, Any]], run_id: str) -> list[Any]:
        body = {"threadId": "twice", "runId": run_id, "state": {}, "messages": messages, "tools": [], "context": []}
        async with http.stream("POST", "/v1/ag-ui", json={**body, "forwardedProps": {}}) as response:
            assert response.status_code == 200, await response.aread()
            return await SseReader(response).read()

    async def sessions() -> set[bytes]:
        return {key for key in await sessions_in(redis, settings) if key.endswith(b":meta")}

    await http.post("/v1/sessions", json={"chat_id": "twice", "agent": "arithmetic"})
    q1, a1 = user("What is 2 + 3?", "u1"), {"id": "text-4", "role": "assistant", "content": "5"}
    await run([q1], "r1")
    await run([q1, a1, user("and times ten?", "u2")], "r2")
    before = await sessions()
    edited = [q1, a1, user("and times two?", "u2")]  # an edit of the last turn: a branch after the first
    first, second = await asyncio.gather(run(edited, "r3"), run(edited, "r3"))
    made = await sessions() - before
    assert len(made) == 1, f"{len(made)} forks for one edit"
    fork_id = next(iter(made)).decode().split("{")[1].split("}")[0]
    fork = (await http.get(f"/v1/sessions/{fork_id}")).json()
    assert [run["input"] for run in fork["runs"]][-1] == "and times two?" and len(fork["runs"]) == 2
    assert first == second


@pytest.mark.ai_sdk
async def test_the_websocket_transport_s_regenerate_branches_and_the_token_outlives_the_first_session(
    http: httpx2.AsyncClient, redis: Redis, settings: Settings
) -> None:
    made = (
        await http.post("/v1/sessions", json={"chat_id": "socket", "agent": "arithmetic", "token_scope": "chat"})
    ).json()
    q1, q2 = said("What is 2 + 3?", "u1"), said("and times ten?", "u2")

    async def send(chat: ChatSocket, request_id: str, messages: list[dict[str, Any]], trigger: str) -> str:
        frame = {"type": "send", "requestId": request_id, "id": "socket", "trigger": trigger, "messages": messages}
        await chat.request(frame)
        frames = await chat.frames(request_id, lambda f: f["type"] in ("end", "error"))
        assert frames[-1]["type"] == "end", frames[-1]
        return "".join(
            f["chunk"]["delta"] for f in frames if f["type"] == "chunk" and f["chunk"]["type"] == "text-delta"
        )

    async with websockets.connect(ws_url(http) + f"?token={made['stream_token']}") as socket:
        chat = ChatSocket(socket)
        assert await send(chat, "q1", [q1], "submit-message") == "5"
        a1 = (await http.get("/v1/ai-sdk/chat/socket/messages")).json()[1]
        assert await send(chat, "q2", [q1, a1, q2], "submit-message") == "50"
        assert await send(chat, "q3", [q1, a1, q2], "regenerate-message") == "50"
    branch = (await http.post("/v1/sessions", json={"chat_id": "socket"})).json()["session_id"]
    assert branch != made["session_id"]
    assert len((await http.get(f"/v1/sessions/{branch}")).json()["runs"]) == 2

    # The chat's first session expires (its branch goes on): the chat's token still refreshes.
    keys = Keys(settings.key_prefix).session(made["session_id"])
    await redis.delete(keys.meta, keys.runs, keys.events)
    refreshed = await http.post(
        f"/v1/sessions/{made['session_id']}/token", headers={"Authorization": f"Bearer {made['stream_token']}"}
    )
    assert refreshed.status_code == 200 and refreshed.json()["stream_token_scope"] == "chat"
    messages = (await http.get("/v1/ai-sdk/chat/socket/messages")).json()
    assert ["".join(p["text"] for p in m["parts"]) for m in messages] == ["What is 2 + 3?", "5", "and times ten?", "50"]


# -- what forks cost ------------------------------------------------------------------------------------


async def limited_stack(start_gateway: Callable[..., Any], start_worker: Callable[..., Any], **limits: Any) -> Gateway:
    await start_worker(agents=AGENTS, **AUTH)
    gateway: Gateway = await start_gateway(agents=AGENTS, **AUTH, **limits)
    return gateway


def api(gateway: Gateway, key: str = KEY) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=20)


async def test_a_fork_spends_one_of_its_tenant_s_runs_per_minute_and_a_refused_one_makes_nothing(
    start_gateway: Callable[..., Any],
    start_worker: Callable[..., Any],
    redis: Redis,
    settings: Settings,
    limits_clock: types.SimpleNamespace,
) -> None:
    gateway = await limited_stack(start_gateway, start_worker, runs_per_minute=3)
    async with api(gateway) as http:
        source, (first, _) = await conversation(http)  # a session and a follow-up: 2 of the minute's 3
        after = {"after": first["finished_seq"]}
        assert (await http.post(f"/v1/sessions/{source}/fork", params=after)).status_code == 201  # the third
        before = await sessions_in(redis, settings)
        refused = await http.post(f"/v1/sessions/{source}/fork", params=after)
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limited", refused.text
        assert refused.headers["Retry-After"] == "50"  # the minute's 50 s left (tests/fixtures/limits_clock.py)
        assert await sessions_in(redis, settings) == before
    async with api(gateway, OTHER_KEY) as other:  # another tenant's minute is its own
        made = await other.post("/v1/sessions", json={"agent": "arithmetic", "input": "What is 1 + 1?"})
        assert made.status_code == 201
        forked = await other.post(f"/v1/sessions/{made.json()['session_id']}/fork", params={"after": 0})
        assert forked.status_code == 201


@pytest.mark.ai_sdk
async def test_a_regenerate_spends_one_run_for_its_fork_and_its_run_and_a_refused_one_branches_nothing(
    start_gateway: Callable[..., Any],
    start_worker: Callable[..., Any],
    redis: Redis,
    settings: Settings,
    limits_clock: types.SimpleNamespace,
) -> None:
    gateway = await limited_stack(start_gateway, start_worker, runs_per_minute=4)
    async with api(gateway) as http:
        await http.post("/v1/sessions", json={"chat_id": "sums", "agent": "arithmetic"})  # 1
        q1, q2 = said("What is 2 + 3?", "u1"), said("and times ten?", "u2")
        assert await chat(http, "sums", [q1]) == "5"  # 2
        a1 = (await http.get("/v1/ai-sdk/chat/sums/messages")).json()[1]
        assert await chat(http, "sums", [q1, a1, q2]) == "50"  # 3
        # One request, one of the minute's runs: a fork with its run, as a session made with its first.
        assert await chat(http, "sums", [q1, a1, q2], trigger="regenerate-message") == "50"  # 4
        before = await sessions_in(redis, settings)
        regenerate = {"id": "sums", "messages": [q1, a1, q2], "trigger": "regenerate-message"}
        refused = await http.post("/v1/ai-sdk/chat", json=regenerate)
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limited", refused.text
        assert refused.headers["Retry-After"] == "50"
        assert await sessions_in(redis, settings) == before  # no fork, and the chat is where it was


@pytest.mark.responses
async def test_a_branching_response_spends_one_run_and_a_refused_one_branches_nothing(
    start_gateway: Callable[..., Any],
    start_worker: Callable[..., Any],
    redis: Redis,
    settings: Settings,
    limits_clock: types.SimpleNamespace,
) -> None:
    gateway = await limited_stack(start_gateway, start_worker, runs_per_minute=3)
    async with AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0, timeout=20) as sdk:
        r1 = await sdk.responses.create(model="arithmetic", input="what is 2 + 3")  # 1
        await sdk.responses.create(model="arithmetic", input="and times ten?", previous_response_id=r1.id)  # 2
        branched = await sdk.responses.create(model="arithmetic", input="and times two?", previous_response_id=r1.id)
        assert branched.output_text == "10"  # 3: a fork and its run, one request
        before = await sessions_in(redis, settings)
        with pytest.raises(openai.RateLimitError) as refused:
            await sdk.responses.create(model="arithmetic", input="and minus 1?", previous_response_id=r1.id)
        assert (refused.value.code, refused.value.response.headers["Retry-After"]) == ("rate_limited", "50")
        assert await sessions_in(redis, settings) == before


async def test_the_bytes_forks_copy_are_bounded_per_tenant_and_hour(
    start_gateway: Callable[..., Any],
    start_worker: Callable[..., Any],
    redis: Redis,
    settings: Settings,
    limits_clock: types.SimpleNamespace,
) -> None:
    bound = 8_000  # a few forks of a turn of arithmetic
    gateway = await limited_stack(start_gateway, start_worker, fork_bytes_per_hour=bound)
    async with api(gateway) as http:
        source, (first, _) = await conversation(http)
        after = {"after": first["finished_seq"]}
        made = 0
        while True:
            before = await sessions_in(redis, settings)
            answer = await http.post(f"/v1/sessions/{source}/fork", params=after)
            if answer.status_code != 201:
                break
            made += 1
            assert made < 30, "forks are not bounded"
        assert made >= 1
        assert answer.status_code == 429 and answer.json()["error"]["type"] == "fork_bytes_limited", answer.text
        assert answer.headers["Retry-After"] == "2810"  # the hour's 2810 s left (tests/fixtures/limits_clock.py)
        assert await sessions_in(redis, settings) == before
        window = int(limits_clock.value // 3600)
        copied = int(await redis.get(Keys(settings.key_prefix).tenant_fork_bytes("acme", window)) or 0)
        assert 0 < copied <= bound
    async with api(gateway, OTHER_KEY) as other:  # another tenant's hour is its own
        other_source, (other_first, _) = await conversation(other)
        forked = await other.post(f"/v1/sessions/{other_source}/fork", params={"after": other_first["finished_seq"]})
        assert forked.status_code == 201, forked.text

    # A fork that alone copies more than the bound could never be made: 413, not a 429 to retry.
    smaller = await start_gateway(agents=AGENTS, fork_bytes_per_hour=copied // made // 2, **AUTH)
    async with api(smaller) as http:
        too_large = await http.post(f"/v1/sessions/{source}/fork", params=after)
        assert too_large.status_code == 413 and too_large.json()["error"]["type"] == "input_too_large", too_large.text
