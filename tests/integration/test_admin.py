"""The operator console's admin API (gateway/admin/) on a real gateway, worker and Redis: the runs
index and its pages, the overview's tenants, workers and throughput, a run's timeline, the actions
through the API's own commands, who may look (admin keys, a tenant's key, stream tokens, loopback with
auth off), and the live stream."""

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.fixtures.stack import Gateway
from tests.support.gates import Gates
from tests.support.waiting import eventually, scaled
from tokentail.gateway.admin import overview as overview_module
from tokentail.shared.features.workers import process_id
from tokentail.shared.plumbing.settings import Settings
from tokentail.worker.process.main import TokentailWorker

ADMIN_KEY = "ops-key-0123456789abcdef"
KEY_A = "acme-key-0123456789abcdef"
KEY_B = "beta-key-0123456789abcdef"
SECRET = SecretStr("s" * 40)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    agents = {
        "held": "tests.support.gates:held",
        "approval": "tests.agents.asking_agent:approval",
        "waits_long": "tests.agents.asking_agent:waits_long_for_a_default",
        "failing": "tests.agents.described_agents:failing",
    }
    return settings.model_copy(update={"agents": agents})


async def run_to_end(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[str, str]:
    made = (await client.post("/v1/sessions", json=body)).json()
    session_id, run_id = made["session_id"], made["run_id"]

    async def ended() -> bool:
        runs = (await client.get(f"/v1/sessions/{session_id}")).json()["runs"]
        return runs[-1]["status"] in ("completed", "failed", "cancelled")

    await eventually(ended, what=f"run {run_id} ends")
    return session_id, run_id


async def test_a_run_is_listed_with_its_worker_and_timeline(client: httpx.AsyncClient, worker: TokentailWorker) -> None:
    session_id, run_id = await run_to_end(
        client, {"input": "What is 12 * (3 + 4)?", "params": {"tokens": 20, "tokens_per_second": 0}}
    )

    page = (await client.get("/v1/admin/runs")).json()
    assert [(run["session_id"], run["run_id"], run["status"]) for run in page["runs"]] == [
        (session_id, run_id, "completed")
    ]
    assert page["next_cursor"] is None
    assert (await client.get("/v1/admin/find", params={"q": run_id})).json() == {
        "session_id": session_id,
        "run_id": run_id,
    }

    timeline = (await client.get(f"/v1/admin/sessions/{session_id}/runs/{run_id}/timeline")).json()
    kinds = [stage["kind"] for stage in timeline["stages"]]
    assert kinds[:2] == ["queued", "started"] and kinds[-1] == "ended", kinds
    assert "tool" in kinds and "text" in kinds
    started = timeline["stages"][1]
    assert started["attempt"] == 1 and started["reason"] == "start" and started["worker"] == process_id()
    tool = next(stage for stage in timeline["stages"] if stage["kind"] == "tool")
    assert tool["status"] == "completed" and isinstance(tool["duration_ms"], int)
    assert timeline["stages"][-1]["status"] == "completed"
    assert [stage["at"] for stage in timeline["stages"]] == sorted(stage["at"] for stage in timeline["stages"])
    assert timeline["events"][0]["type"] == "run.queued" and timeline["events"][-1]["type"] == "run.completed"

    workers = (await client.get("/v1/admin/workers")).json()["workers"]

    async def beats() -> bool:
        found = (await client.get("/v1/admin/workers")).json()["workers"]
        return any(w["worker"] == process_id() and w["alive"] for w in found)

    await eventually(beats, what="the worker's heartbeat")
    workers = (await client.get("/v1/admin/workers")).json()["workers"]
    assert workers[0]["slots"] == worker._settings.worker_concurrency  # noqa: SLF001

    detail = (await client.get(f"/v1/admin/sessions/{session_id}")).json()
    assert [turn["role"] for turn in detail["transcript"]] == ["user", "assistant"]
    assert detail["runs"][0]["run_id"] == run_id and detail["questions"] == []


async def test_a_run_is_re_run_from_its_last_recorded_step_and_a_fork_outside_the_run_is_refused(
    client: httpx.AsyncClient, worker: TokentailWorker
) -> None:
    session_id, run_id = await run_to_end(client, {"input": "What is 12 * (3 + 4)?", "params": {"tokens": 20}})
    state = (await client.get(f"/v1/sessions/{session_id}")).json()
    run = state["runs"][0]
    base = f"/v1/admin/sessions/{session_id}/runs/{run_id}/fork"
    rerun = await client.post(base, json={})
    assert rerun.status_code == 201, rerun.text
    forked = rerun.json()
    # After its last recorded step (the calculator's result): inside the run, before its end.
    assert forked["run_id"] == run_id and run["queued_seq"] < forked["at"] < run["finished_seq"]
    fork = forked["session_id"]

    async def completed() -> bool:
        runs = (await client.get(f"/v1/sessions/{fork}")).json()["runs"]
        return bool(runs[0]["status"] == "completed")

    await eventually(completed, what="the re-run's end")
    timeline = (await client.get(f"/v1/admin/sessions/{fork}/runs/{run_id}/timeline")).json()
    assert timeline["forked_from"] == {"session_id": session_id, "event_id": forked["at"]}
    assert timeline["forks"] == []
    source = (await client.get(f"/v1/admin/sessions/{session_id}/runs/{run_id}/timeline")).json()
    assert [(made["session_id"], made["event_id"]) for made in source["forks"]] == [(fork, forked["at"])]
    assert not any(stage["kind"] == "tool" and stage["status"] == "running" for stage in timeline["stages"])
    for at in (run["finished_seq"], run["finished_seq"] + 5):  # its end, and past the session's
        refused = await client.post(base, json={"at": at})
        assert refused.status_code == 422 and f"not one of run {run_id}'s" in refused.text
    assert (await client.post(base, json={"at": 2, "agent": "nobody"})).status_code == 422


async def test_pages_go_newest_first_by_cursor_and_filter(client: httpx.AsyncClient, worker: TokentailWorker) -> None:
    made = [
        await run_to_end(client, {"input": f"question {i}", "params": {"tokens": 2}, "user": f"user-{i % 2}"})
        for i in range(5)
    ]
    seen: list[tuple[str, str]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/admin/runs", params=params)).json()
        seen += [(run["session_id"], run["run_id"]) for run in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made[::-1]
    assert (await client.get("/v1/admin/runs", params={"status": "failed"})).json()["runs"] == []
    assert len((await client.get("/v1/admin/runs", params={"status": "completed"})).json()["runs"]) == 5
    by_user = (await client.get("/v1/admin/runs", params={"user": "user-1"})).json()["runs"]
    assert [(run["run_id"], run["user"]) for run in by_user] == [(made[3][1], "user-1"), (made[1][1], "user-1")]
    bad = await client.get("/v1/admin/runs", params={"cursor": "nonsense"})
    assert bad.status_code == 422, bad.text


async def test_a_cursor_the_index_never_gave_is_422(client: httpx.AsyncClient) -> None:
    # Issue 84: `nan`, which float() takes and Redis refuses as a bound, answered 500 with a traceback.
    await client.post("/v1/sessions", json={"input": "listed"})  # the index is not empty
    for cursor in ["nan s_x r_x", "NaN s_x r_x", "inf s_x r_x", "-inf s_x r_x", "1e400 s_x r_x", "-1 s_x r_x"] + [
        "1.5 s_x r_x",
        "\u0661\u0662 s_x r_x",  # digits, to str.isdigit
        "12 s_x",
        "nonsense",
    ]:
        response = await client.get("/v1/admin/runs", params={"cursor": cursor})
        assert response.status_code == 422, (cursor, response.text)
        assert response.json()["error"]["message"].startswith("cursor: "), (cursor, response.text)


async def test_the_overview_shows_a_held_run_going_and_its_tenant(
    client: httpx.AsyncClient, start_worker: Callable[..., Any], gates: Gates
) -> None:
    await start_worker()
    made = (await client.post("/v1/sessions", json={"input": "wait", "agent": "held"})).json()
    await eventually(lambda: gates.reached(made["run_id"]), what="the run at its gate")  # held halfway

    overview = (await client.get("/v1/admin/overview")).json()
    assert [run["run_id"] for run in overview["active"]] == [made["run_id"]]
    assert overview["active"][0]["status"] == "running"
    assert overview["tenants"] == [{"tenant": "public", "running": 1, "waiting": 0, "cap": 0, "parked": False}]

    async def held_by_the_worker() -> bool:
        workers = (await client.get("/v1/admin/workers")).json()["workers"]
        return any(run["run_id"] == made["run_id"] for w in workers for run in w["runs"])

    await eventually(held_by_the_worker, what="the worker's beat lists the run")
    gates.release(made["run_id"])


async def test_runs_queued_after_a_failure_do_not_push_it_out_of_the_overview(
    client: httpx.AsyncClient, worker: TokentailWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenant that queues many cheap runs after another's failure: the overview still lists it (the
    index of runs in trouble is written where runs end). The overview reads the newest 250 runs: 5 here."""
    monkeypatch.setattr(overview_module, "OVERVIEW_RUNS", 5)
    failed_session, failed_run = await run_to_end(client, {"input": "go", "agent": "failing"})
    for n in range(8):
        await run_to_end(client, {"input": f"cheap {n}", "params": {"tokens": 2, "tokens_per_second": 0}})

    recent = (await client.get("/v1/admin/overview")).json()["recent"]
    assert [(run["session_id"], run["run_id"], run["status"]) for run in recent] == [
        (failed_session, failed_run, "failed")
    ]
    assert recent[0]["error"]


async def test_a_question_answered_and_a_run_cancelled_from_the_console(
    client: httpx.AsyncClient, worker: TokentailWorker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tokentail.gateway.admin.routes")
    made = (await client.post("/v1/sessions", json={"input": "clean up", "agent": "approval"})).json()
    session_id, run_id = made["session_id"], made["run_id"]

    async def asked() -> list[dict[str, Any]]:
        questions: list[dict[str, Any]] = (await client.get(f"/v1/admin/sessions/{session_id}")).json()["questions"]
        return questions

    questions = await eventually(asked, what="the question")
    answered = await client.post(
        f"/v1/admin/sessions/{session_id}/runs/{run_id}/answers",
        json={"input_id": questions[0]["input_id"], "answer": {"approved": True}},
    )
    assert answered.status_code == 202, answered.text
    assert "console: local answered session" in caplog.text

    async def completed() -> bool:
        status: str = (await client.get(f"/v1/sessions/{session_id}")).json()["runs"][0]["status"]
        return status == "completed"

    await eventually(completed, what="the run goes on and ends")
    stages = (await client.get(f"/v1/admin/sessions/{session_id}/runs/{run_id}/timeline")).json()["stages"]
    kinds = [stage["kind"] for stage in stages]
    assert kinds.index("question") < kinds.index("answered") < kinds.index("ended")
    assert [s["reason"] for s in stages if s["kind"] == "started"] == ["start", "resume"]
    answered_stage = next(stage for stage in stages if stage["kind"] == "answered")
    assert answered_stage["by"] == "admin:local" and answered_stage["gateway"] == process_id()

    again = await client.post(
        f"/v1/admin/sessions/{session_id}/runs/{run_id}/answers",
        json={"input_id": questions[0]["input_id"], "answer": {"approved": True}},
    )
    assert again.status_code == 409

    deleted = await client.delete(f"/v1/admin/sessions/{session_id}")
    assert deleted.status_code == 204
    assert (await client.get(f"/v1/sessions/{session_id}")).status_code == 410
    assert (await client.get("/v1/admin/runs")).json()["runs"] == []  # the index drops what is gone


@pytest.mark.parametrize(("agent", "ending"), [("approval", "failed"), ("waits_long", "completed")])
async def test_a_question_expired_from_the_console_ends_as_its_deadline_would(
    client: httpx.AsyncClient, worker: TokentailWorker, agent: str, ending: str
) -> None:
    made = (await client.post("/v1/sessions", json={"input": "go", "agent": agent})).json()
    session_id, run_id = made["session_id"], made["run_id"]

    async def asked() -> list[dict[str, Any]]:
        questions: list[dict[str, Any]] = (await client.get(f"/v1/admin/sessions/{session_id}")).json()["questions"]
        return questions

    input_id = (await eventually(asked, what="the question"))[0]["input_id"]
    expired = await client.post(f"/v1/admin/sessions/{session_id}/runs/{run_id}/questions/{input_id}/expire")
    assert expired.status_code == 202, expired.text

    async def ended() -> dict[str, Any]:
        run: dict[str, Any] = (await client.get(f"/v1/sessions/{session_id}")).json()["runs"][0]
        return run if run["status"] in ("completed", "failed") else {}

    run = await eventually(ended, what="the reaper ends the question")
    assert run["status"] == ending
    if ending == "failed":
        assert run["error"]["type"] == "input_expired"
    again = await client.post(f"/v1/admin/sessions/{session_id}/runs/{run_id}/questions/{input_id}/expire")
    assert again.status_code == 409


async def test_cancel_a_queued_run_and_audit_slots(client: httpx.AsyncClient) -> None:
    made = (await client.post("/v1/sessions", json={"input": "never runs"})).json()  # no worker: it stays queued
    session_id, run_id = made["session_id"], made["run_id"]
    active = (await client.get("/v1/admin/runs", params={"status": "active"})).json()["runs"]
    assert [run["run_id"] for run in active] == [run_id]
    stages = (await client.get(f"/v1/admin/sessions/{session_id}/runs/{run_id}/timeline")).json()["stages"]
    assert stages == [
        {"at": stages[0]["at"], "kind": "queued", "event_id": 1, "place": 1, "wait_ms": None, "waiting_for": "turn"}
    ]
    cancelled = await client.post(f"/v1/admin/sessions/{session_id}/runs/{run_id}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["run_id"] == run_id
    assert (await client.get(f"/v1/sessions/{session_id}")).json()["runs"][0]["status"] == "cancelled"
    assert (await client.post("/v1/admin/slots/audit")).json() == {"given_back": 0}


async def test_a_tenant_key_sees_its_tenant_only(start_gateway: Callable[..., Any]) -> None:
    gateway: Gateway = await start_gateway(
        api_keys=SecretStr(f"acme:{KEY_A},beta:{KEY_B}"), secret=SECRET, admin_keys=SecretStr(f"ops:{ADMIN_KEY}")
    )

    def as_(key: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=gateway.url, headers=headers)

    async with as_(KEY_A) as acme, as_(KEY_B) as beta, as_(ADMIN_KEY) as ops, as_(None) as nobody:
        mine = (await acme.post("/v1/sessions", json={"input": "acme's"})).json()
        theirs = (await beta.post("/v1/sessions", json={"input": "beta's"})).json()
        assert (await acme.get("/v1/admin/whoami")).json() == {"who": "tenant:acme", "tenant": "acme", "auth": True}
        assert (await ops.get("/v1/admin/whoami")).json() == {"who": "ops", "tenant": None, "auth": True}

        listed = (await acme.get("/v1/admin/runs")).json()["runs"]
        assert [run["run_id"] for run in listed] == [mine["run_id"]]
        assert (await acme.get("/v1/admin/runs", params={"tenant": "beta"})).json()["runs"] == []
        for path in (
            f"/v1/admin/sessions/{theirs['session_id']}",
            f"/v1/admin/sessions/{theirs['session_id']}/runs/{theirs['run_id']}/timeline",
        ):
            refused = await acme.get(path)
            assert refused.status_code == 404, path
        assert (await acme.get("/v1/admin/find", params={"q": theirs["run_id"]})).status_code == 404
        assert (
            await acme.post(f"/v1/admin/sessions/{theirs['session_id']}/runs/{theirs['run_id']}/cancel")
        ).status_code == 404
        assert (await acme.delete(f"/v1/admin/sessions/{theirs['session_id']}")).status_code == 404
        assert [t["tenant"] for t in (await acme.get("/v1/admin/tenants")).json()["tenants"]] == ["acme"]
        assert (await acme.get("/v1/admin/workers")).json() == {"workers": []}  # the deployment's: every tenant's
        assert (await acme.get("/v1/admin/metrics")).json()["points"] == []

        every = {run["run_id"] for run in (await ops.get("/v1/admin/runs")).json()["runs"]}
        assert every == {mine["run_id"], theirs["run_id"]}
        assert [t["tenant"] for t in (await ops.get("/v1/admin/tenants")).json()["tenants"]] == ["acme", "beta"]

        assert (await ops.delete(f"/v1/admin/sessions/{theirs['session_id']}")).status_code == 204
        assert (await ops.get(f"/v1/admin/sessions/{theirs['session_id']}")).status_code == 410
        assert (await acme.get(f"/v1/admin/sessions/{theirs['session_id']}")).status_code == 404  # not 410: not its

        assert (await nobody.get("/v1/admin/overview")).status_code == 401
        async with as_(mine["stream_token"]) as token:
            assert (await token.get("/v1/admin/overview")).status_code == 403
        async with as_("not-a-key-at-all-0123456789") as wrong:
            assert (await wrong.get("/v1/admin/overview")).status_code == 401


async def test_the_live_stream_sends_overviews_and_the_followed_run(
    client: httpx.AsyncClient, worker: TokentailWorker
) -> None:
    session_id, run_id = await run_to_end(client, {"input": "hello", "params": {"tokens": 3}})
    params = {"session": session_id, "run": run_id}
    events: dict[str, Any] = {}
    async with client.stream("GET", "/v1/admin/stream", params=params, timeout=scaled(10)) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event:
                events[event] = json.loads(line.removeprefix("data: "))
                if {"overview", "timeline"} <= events.keys():
                    break
    assert events["timeline"]["run_id"] == run_id and events["timeline"]["stages"][-1]["kind"] == "ended"
    assert [run["run_id"] for run in events["overview"]["active"]] == []


async def test_the_page_is_served(client: httpx.AsyncClient) -> None:
    for path in ("/console", "/console/sessions/s_x/runs/r_y"):
        page = await client.get(path)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"], path


async def test_the_stream_ends_when_the_gateway_stops(start_gateway: Callable[..., Any]) -> None:
    gateway: Gateway = await start_gateway()
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        async with http.stream("GET", "/v1/admin/stream") as response:
            lines = response.aiter_lines()
            assert await anext(lines) == "retry: 1000"
            stopping = asyncio.create_task(gateway.stop())
            async with asyncio.timeout(scaled(10)):
                async for _ in lines:
                    pass
            await stopping


async def test_a_window_that_is_no_time_is_422(client: httpx.AsyncClient) -> None:
    # `since`/`until` are epoch seconds: `inf` (and 1e400, which is inf) is none, as `nan` is.
    await client.post("/v1/sessions", json={"input": "listed"})
    for window in [{"since": "nan"}, {"until": "inf"}, {"since": "1e400"}, {"until": "-inf"}]:
        response = await client.get("/v1/admin/runs", params=window)
        assert response.status_code == 422, (window, response.text)
    far = {"since": "1.46e218", "until": "2.4e85", "cursor": "1764000000000000 s_x r_x"}  # a window, if empty
    assert (await client.get("/v1/admin/runs", params=far)).json()["runs"] == []
    assert len((await client.get("/v1/admin/runs", params={"since": "0"})).json()["runs"]) == 1
