"""AG-UI's resumable binding and 1.1 negotiation, on a real gateway, worker and Redis (docs/ag-ui-resume.md):
an id on every frame, the same POST sent again (with `Last-Event-ID`, or before any id) writing nothing,
`joinRun`'s GET by the client's run id, the capabilities document, `protocolVersion`, and resume[]
refused with RUN_ERROR or cancelling with RUN_FINISHED. TanStack AI's and @ag-ui/client's own runs of
these: tests/node."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from ag_ui.core import AgentCapabilities, Event
from pydantic import SecretStr, TypeAdapter
from standardwebhooks import Webhook

from tests.fixtures.stack import Gateway
from tests.integration.test_chat_protocols import KEY_A, KEY_B, SECRET, Frame, agent_input, bearer, sse_frames, types
from tests.servers.webhook_receiver import Receiver
from tests.support.gates import Gates
from tests.support.waiting import eventually
from tokentail.shared.plumbing.settings import Settings
from tokentail.worker.process.main import TokentailWorker

pytestmark = pytest.mark.ag_ui


AG_UI_EVENT: TypeAdapter[Any] = TypeAdapter(Event)
SLOW = {"params": {"tokens": 40, "tokens_per_second": 40}}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    agents = {
        "held": "tests.support.gates:held",
        "approve": "tests.agents.asking_agent:approval",
        "parallel": "tests.agents.asking_agent:parallel_approvals",
        "how_much": "tests.agents.asking_agent:how_much",
    }
    return settings.model_copy(update={"agents": agents, "webhook_allowed_urls": ["http://127.0.0.1:9/"]})


@pytest.fixture
async def http(gateway: Gateway, worker: TokentailWorker) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=15) as client:
        yield client


async def post(http: httpx2.AsyncClient, body: dict[str, Any], **headers: str) -> list[Frame]:
    async with http.stream("POST", "/v1/ag-ui", json=body, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        frames = await sse_frames(response)
    for _, event in frames:
        AG_UI_EVENT.validate_python(event)  # AG-UI's own models
    return frames


async def runs_of(http: httpx2.AsyncClient, thread_id: str) -> list[dict[str, Any]]:
    session_id = (await http.post("/v1/sessions", json={"chat_id": thread_id})).json()["session_id"]
    runs: list[dict[str, Any]] = (await http.get(f"/v1/sessions/{session_id}")).json()["runs"]
    return runs


async def test_every_frame_has_an_id_and_the_same_post_with_one_continues_after_it(http: httpx2.AsyncClient) -> None:
    await http.post("/v1/sessions", json={"chat_id": "same-post", **SLOW})
    body = agent_input("same-post")
    whole = await post(http, body)
    assert all(frame_id is not None for frame_id, _ in whole) and len({i for i, _ in whole}) == len(whole)
    assert any("." in str(frame_id) for frame_id, _ in whole), "an event of several frames: <id>.<k> before its last"
    for cut in range(len(whole) - 1):  # cut after every frame, inside events too
        last_event_id = whole[cut][0]
        assert last_event_id is not None
        assert await post(http, body, **{"Last-Event-ID": last_event_id}) == whole[cut + 1 :]
    # The same POST again, before it had any id: that run from its start, not a second run.
    assert await post(http, body) == whole
    assert len(await runs_of(http, "same-post")) == 1
    # A new message (a new runId, or a client reusing one with another message): a new run.
    await post(http, {**agent_input("same-post", "again"), "runId": "client-run"})
    assert len(await runs_of(http, "same-post")) == 2


async def test_join_run_by_the_clients_run_id_from_the_start_now_or_an_id(
    http: httpx2.AsyncClient, gates: Gates
) -> None:
    await http.post("/v1/sessions", json={"chat_id": "join", "agent": "held"})
    body = {**agent_input("join"), "runId": "tanstack-run-1"}
    async with http.stream("POST", "/v1/ag-ui", json=body) as response:
        head = await sse_frames(response, until=lambda frames: "TEXT_MESSAGE_CONTENT" in types(frames))
    [run] = await runs_of(http, "join")
    joined = {"runId": "tanstack-run-1", "offset": "-1"}
    async with http.stream("GET", "/v1/ag-ui", params=joined) as response:  # no Accept header, as TanStack AI
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        start = await sse_frames(response, until=lambda frames: len(frames) >= len(head))
    assert start == head, "joinRun from the start: the frames the poster had"
    gates.release(run["run_id"])
    async with http.stream("GET", "/v1/ag-ui", params=joined, headers={"Last-Event-ID": head[-1][0] or ""}) as response:
        rest = await sse_frames(response)
    assert types(rest)[-1] == "RUN_FINISHED" and rest[-1][1]["runId"] == run["run_id"]
    async with http.stream("GET", "/v1/ag-ui", params={"runId": "tanstack-run-1", "offset": "0"}) as response:
        assert await sse_frames(response) == head + rest  # an offset is a frame id
    # A second device learned the run from the wire (RUN_STARTED's runId), not from the POST: it joins by it.
    from_the_wire = head[0][1]["runId"]
    assert head[0][1]["type"] == "RUN_STARTED" and from_the_wire != "tanstack-run-1"
    async with http.stream("GET", "/v1/ag-ui", params={"runId": from_the_wire}) as response:
        assert response.status_code == 200 and await sse_frames(response) == head + rest
    missing = await http.get("/v1/ag-ui", params={"runId": "no-such-run"})
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "run_not_found"
    assert (await http.get("/v1/ag-ui", params={"runId": "tanstack-run-1", "offset": "x"})).status_code == 400


async def test_capabilities_declare_resumable_and_push_with_their_mechanisms(
    http: httpx2.AsyncClient, start_gateway: Any
) -> None:
    answer = await http.get("/v1/ag-ui/capabilities")
    assert answer.status_code == 200
    capabilities = AgentCapabilities.model_validate(answer.json())
    assert capabilities.transport is not None
    assert capabilities.transport.resumable is True and capabilities.transport.push_notifications is True
    assert capabilities.custom is not None
    described = capabilities.custom["tokentail"]
    assert (
        "Last-Event-ID" in described["resume"]["reconnect"]
        and "PUT /v1/webhook" in described["pushNotifications"]["configure"]
    )
    no_webhooks: Gateway = await start_gateway(webhook_allowed_urls=[])
    async with httpx2.AsyncClient(base_url=no_webhooks.url) as other:
        declared = (await other.get("/v1/ag-ui/capabilities")).json()
    assert declared["transport"]["pushNotifications"] is False, "no push while webhooks are off"


async def test_a_run_declares_the_clients_older_minor_or_its_own(http: httpx2.AsyncClient) -> None:
    await http.post("/v1/sessions", json={"chat_id": "versions"})
    older = await post(http, {**agent_input("versions"), "protocolVersion": "1.0"})
    current = await post(http, {**agent_input("versions", "next"), "runId": "r2"})
    assert older[0][1]["protocolVersion"] == "1.0" and current[0][1]["protocolVersion"] == "1.1"


async def test_resume_refused_with_run_error_or_cancelling_with_run_finished(http: httpx2.AsyncClient) -> None:
    await http.post("/v1/sessions", json={"chat_id": "asks", "agent": "approve"})
    asked = await post(http, agent_input("asks"))
    [interrupt] = asked[-1][1]["outcome"]["interrupts"]
    # TanStack AI's: tests/unit/gateway/protocols/test_ui_protocols.py
    binding = interrupt["metadata"].pop("tanstack:interruptBinding")
    assert interrupt["metadata"] == {"kind": "approval", "toolName": "delete_files", "input": {"count": 3}}
    assert (binding["interruptId"], binding["interruptedRunId"]) == (interrupt["id"], "client-run")

    def resume(interrupt_id: str, status: str = "resolved", run_id: str = "r-resume") -> dict[str, Any]:
        entry = {"interruptId": interrupt_id, "status": status, "payload": {"approved": True}}
        return {**agent_input("asks"), "runId": run_id, "resume": [entry]}

    stale = await post(http, resume("in_nothing"))
    assert types(stale) == ["RUN_ERROR"] and stale[0][1]["code"] == "input_not_pending"
    [run] = await runs_of(http, "asks")
    assert run["status"] == "waiting", "nothing changed"
    cancelled = await post(http, resume(interrupt["id"], "cancelled"))
    assert types(cancelled) == ["RUN_STARTED", "RUN_FINISHED"]
    assert cancelled[-1][1]["outcome"] == {"type": "cancelled"}
    # Cut after its RUN_STARTED, the same POST again with that id: the rest (the question is no stop now).
    after_start = cancelled[0][0]
    assert after_start is not None
    assert await post(http, resume(interrupt["id"], "cancelled"), **{"Last-Event-ID": after_start}) == cancelled[1:]
    [run] = await runs_of(http, "asks")
    assert run["status"] == "cancelled"
    again = await post(http, resume(interrupt["id"], run_id="r-again"))
    assert types(again) == ["RUN_ERROR"], "an interrupt of a run that ended is stale"


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
async def test_a_resume_with_a_number_json_has_not_is_refused_and_nothing_stored(
    http: httpx2.AsyncClient, number: str
) -> None:
    chat_id = f"non-finite-{number}"
    await http.post("/v1/sessions", json={"chat_id": chat_id, "agent": "how_much"})
    [interrupt] = (await post(http, agent_input(chat_id)))[-1][1]["outcome"]["interrupts"]
    entry = f'{{"interruptId": {json.dumps(interrupt["id"])}, "status": "resolved", "payload": {number}}}'
    body = json.dumps({**agent_input(chat_id), "runId": "r-resume"})[:-1] + f', "resume": [{entry}]}}'
    headers = {"content-type": "application/json"}
    async with http.stream("POST", "/v1/ag-ui", content=body, headers=headers) as response:
        frames = await sse_frames(response) if response.status_code == 200 else []
        refused = response.status_code == 422 or [event["type"] for _, event in frames] == ["RUN_ERROR"]
    assert refused, (response.status_code, frames)
    [run] = await runs_of(http, chat_id)
    assert run["status"] == "waiting", "nothing answered"
    session_id = (await http.post("/v1/sessions", json={"chat_id": chat_id})).json()["session_id"]
    state = await http.get(f"/v1/sessions/{session_id}")
    json.loads(state.text, parse_constant=lambda name: pytest.fail(f"{name} stored"))  # every reader can parse it


async def test_a_resume_cut_and_sent_again_with_last_event_id_continues_without_answering_twice(
    http: httpx2.AsyncClient,
) -> None:
    await http.post("/v1/sessions", json={"chat_id": "resumed", "agent": "approve"})
    [interrupt] = (await post(http, agent_input("resumed")))[-1][1]["outcome"]["interrupts"]
    entry = {"interruptId": interrupt["id"], "status": "resolved", "payload": {"approved": True}}
    body = {**agent_input("resumed"), "runId": "r-resume", "resume": [entry]}
    whole = await post(http, body)
    assert types(whole)[0] == "RUN_STARTED" and whole[-1][1]["outcome"] == {"type": "success"}
    for cut in range(len(whole) - 1):
        last_event_id = whole[cut][0]
        assert last_event_id is not None
        assert await post(http, body, **{"Last-Event-ID": last_event_id}) == whole[cut + 1 :]
    [run] = await runs_of(http, "resumed")
    assert run["status"] == "completed" and run["output"] == "Checking. Done: deleted."


async def test_a_thread_caught_up_from_its_start_is_several_runs_on_one_stream(http: httpx2.AsyncClient) -> None:
    await http.post("/v1/sessions", json={"chat_id": "caught-up"})
    first = await post(http, agent_input("caught-up", "one"))
    second = await post(http, {**agent_input("caught-up", "two"), "runId": "second"})
    async with http.stream("GET", "/v1/ag-ui/caught-up", headers={"Last-Event-ID": "0"}) as response:
        thread = await sse_frames(response)
    # Each run closed (RUN_FINISHED) before the next opens; the same frames, ids included, as each POST had.
    assert thread == first + second
    assert types(thread).count("RUN_STARTED") == types(thread).count("RUN_FINISHED") == 2


async def test_join_run_is_the_posting_tenants_and_chats_only(start_gateway: Any, worker: TokentailWorker) -> None:
    keys = SecretStr(f"acme:{KEY_A},beta:{KEY_B}")
    gateway: Gateway = await start_gateway(api_keys=keys, secret=SecretStr(SECRET))
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=15) as http:

        async def chat_token(chat_id: str) -> str:
            made = await http.post(
                "/v1/sessions", json={"chat_id": chat_id, "token_scope": "chat"}, headers=bearer(KEY_A)
            )
            token: str = made.json()["stream_token"]
            return token

        mine, other = await chat_token("join-mine"), await chat_token("join-other")
        body = {**agent_input("join-mine"), "runId": "tanstack-run-2"}
        await post(http, body, Authorization=f"Bearer {mine}")
        joined = {"runId": "tanstack-run-2"}
        assert (await http.get("/v1/ag-ui", params=joined, headers=bearer(mine))).status_code == 200
        assert (await http.get("/v1/ag-ui", params=joined, headers=bearer(KEY_A))).status_code == 200
        assert (await http.get("/v1/ag-ui", params=joined, headers=bearer(KEY_B))).status_code == 404
        assert (await http.get("/v1/ag-ui", params=joined)).status_code == 401
        # Another chat of the tenant: the id names no run of its own (it never learns of the other's), and
        # it uses the same id for its own run, and joins that.
        assert (await http.get("/v1/ag-ui", params=joined, headers=bearer(other))).status_code == 404
        body = {**agent_input("join-other"), "runId": "tanstack-run-2"}
        posted = await post(http, body, Authorization=f"Bearer {other}")
        async with http.stream("GET", "/v1/ag-ui", params=joined, headers=bearer(other)) as response:
            assert response.status_code == 200 and await sse_frames(response) == posted
        async with http.stream("GET", "/v1/ag-ui", params=joined, headers=bearer(mine)) as response:
            assert response.status_code == 200 and await sse_frames(response) != posted  # each its own


async def test_a_resume_that_leaves_an_open_interrupt_out_is_refused_and_answers_none(http: httpx2.AsyncClient) -> None:
    await http.post("/v1/sessions", json={"chat_id": "two-asked", "agent": "parallel"})
    interrupts = (await post(http, agent_input("two-asked")))[-1][1]["outcome"]["interrupts"]
    assert len(interrupts) == 2
    entries = [{"interruptId": i["id"], "status": "resolved", "payload": {"approved": True}} for i in interrupts]
    partial = await post(http, {**agent_input("two-asked"), "runId": "partial", "resume": entries[:1]})
    assert types(partial) == ["RUN_ERROR"] and partial[0][1]["code"] == "validation_error"
    [run] = await runs_of(http, "two-asked")
    assert run["status"] == "waiting" and run["answers"] == {}, "nothing answered"
    whole = await post(http, {**agent_input("two-asked"), "runId": "whole", "resume": entries})
    assert whole[-1][1]["outcome"] == {"type": "success"}


async def test_push_as_the_capabilities_describe_it_posts_the_interrupt_and_the_end_signed(
    start_gateway: Any, start_worker: Any
) -> None:
    async with Receiver() as receiver:
        settings = {
            "agents": {"approve": "tests.agents.asking_agent:approval"},
            "webhook_allowed_urls": [receiver.url + "/hooks/"],
        }
        gateway: Gateway = await start_gateway(**settings)
        await start_worker(**settings)
        async with httpx2.AsyncClient(base_url=gateway.url, timeout=15) as http:
            push = (await http.get("/v1/ag-ui/capabilities")).json()["custom"]["tokentail"]["pushNotifications"]
            assert push["enabled"] and push["configure"].startswith("PUT /v1/webhook")
            config = (await http.put("/v1/webhook", json={"url": receiver.url + "/hooks/ag-ui"})).json()
            await http.post("/v1/sessions", json={"chat_id": "pushed", "agent": "approve"})
            [interrupt] = (await post(http, agent_input("pushed")))[-1][1]["outcome"]["interrupts"]
            await eventually(lambda: len(receiver.accepted()) == 1, within=30, what="the interrupt posted")
            entry = {"interruptId": interrupt["id"], "status": "resolved", "payload": {"approved": True}}
            await post(http, {**agent_input("pushed"), "runId": "r2", "resume": [entry]})
            await eventually(lambda: len(receiver.accepted()) == 2, within=30, what="the end posted")
    verifier = Webhook(config["secret"])
    posted = [verifier.verify(d.body, d.headers) for d in receiver.accepted()]  # each signed
    assert [p["type"] for p in posted] == ["input.required", "run.completed"]
    assert posted[0]["data"]["input_id"] == interrupt["id"]


async def test_a_thread_of_a_run_queued_behind_another_resumes_after_any_frame(
    http: httpx2.AsyncClient, gates: Gates
) -> None:
    await http.post("/v1/sessions", json={"chat_id": "in-line", "agent": "held"})
    async with http.stream("POST", "/v1/ag-ui", json=agent_input("in-line", "first")) as response:
        await sse_frames(response, until=lambda frames: "TEXT_MESSAGE_CONTENT" in types(frames))
    async with http.stream("POST", "/v1/ag-ui", json={**agent_input("in-line", "second"), "runId": "2"}) as response:
        assert response.status_code == 200  # queued behind the first
    first, second = await runs_of(http, "in-line")
    gates.release(first["run_id"])
    gates.release(second["run_id"])
    async with http.stream("GET", "/v1/ag-ui/in-line", params={"last_event_id": "0"}) as response:
        thread = await sse_frames(response)
    assert types(thread).count("RUN_STARTED") == types(thread).count("RUN_FINISHED") == 2
    for cut in range(len(thread) - 1):  # the first run's end, the second's start among them
        last_event_id = thread[cut][0]
        assert last_event_id is not None
        async with http.stream("GET", "/v1/ag-ui/in-line", headers={"Last-Event-ID": last_event_id}) as response:
            assert await sse_frames(response) == thread[cut + 1 :], f"after {last_event_id}"


async def test_a_steering_message_sent_again_steers_once(
    start_gateway: Any, worker: TokentailWorker, gates: Gates
) -> None:
    gateway: Gateway = await start_gateway(chat_while_running="steer")
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=15) as http:
        await http.post("/v1/sessions", json={"chat_id": "steered", "agent": "held"})
        async with http.stream("POST", "/v1/ag-ui", json=agent_input("steered")) as response:
            await sse_frames(response, until=lambda frames: "TEXT_MESSAGE_CONTENT" in types(frames))
        steer = {**agent_input("steered", "shorter, please"), "runId": "steer-1"}
        shown: list[list[Frame]] = []
        for wanted in ("CUSTOM", "RUN_STARTED"):  # the second: the same POST again while the steer waits (was: 500)

            def seen(frames: list[Frame], wanted: str = wanted) -> bool:
                return wanted in types(frames)

            async with http.stream("POST", "/v1/ag-ui", json=steer) as response:
                assert response.status_code == 200
                shown.append(await sse_frames(response, until=seen))
        [run] = await runs_of(http, "steered")
        async with http.stream("GET", "/v1/ag-ui/steered", params={"last_event_id": "0"}) as response:
            early = await sse_frames(response, until=lambda frames: "CUSTOM" in types(frames))
        assert types(early)[-1] == "CUSTOM", "the thread read while its steer waits shows it"
        assert (await http.post("/v1/ag-ui/steered/stop")).status_code == 202
        async with http.stream("GET", "/v1/ag-ui/steered", params={"last_event_id": "0"}) as response:
            thread = await sse_frames(response)
    first, again = shown
    assert types(first) == ["RUN_STARTED", "CUSTOM"] and first[1][1]["value"]["status"] == "accepted"
    # Sent again: the steered run from then on, and no second steer.
    assert types(again) == ["RUN_STARTED"] and again[0][1]["runId"] == run["run_id"]
    steers = [e["value"] for _, e in thread if e["type"] == "CUSTOM" and e["name"] == "steer"]
    assert [s["status"] for s in steers].count("accepted") == 1, steers
