"""The operator console (/console, docs/console.md) in a real browser, against real gateways, workers and
redis-server: a new run appears live, a worker's death shows as a takeover on the run's timeline, a question
is answered from it, a tenant's key sees its tenant only, it works with auth on and off, its actions ask
first, and its live stream comes back (with `Last-Event-ID`) when its gateway goes."""

import asyncio
import json
import re
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from playwright.async_api import Browser, ConsoleMessage, Dialog, Page, Request, expect
from pydantic import SecretStr

from tests.e2e.conftest import Stack
from tests.fixtures.stack import Gateway
from tests.integration.test_auth import KEY_A, KEY_B, SECRET
from tests.support.gates import Gates
from tests.support.waiting import eventually, scaled
from tokentail.shared.plumbing.settings import Settings

ADMIN_KEY = "ops-key-0123456789abcdef"
QUESTIONS = {"approve": "tests.agents.asking_agent:approval"}
ACTIONS = {**QUESTIONS, "held": "tests.support.gates:held"}


def wait_ms(seconds: float = 20) -> float:
    """A Playwright timeout (ms) of `seconds` on a quiet machine, stretched on a loaded one."""
    return scaled(seconds) * 1000


class Console:
    """A page of the console and what went wrong in it (uncaught errors, console errors)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("console", lambda message: self.errors.append(message.text) if self._error(message) else None)

        self.confirming = True  # what the operator answers to the page's confirm dialogs

        async def accept(dialog: Dialog) -> None:
            self.dialogs.append(dialog.message)
            await (dialog.accept() if self.confirming else dialog.dismiss())

        page.on("dialog", accept)

    @staticmethod
    def _error(message: ConsoleMessage) -> bool:
        """An error the page logged; not the browser's note of a 401, 404 or 410 the API answered (the key
        form and the not-found view are what the page makes of them)."""
        answered = re.fullmatch(
            r"Failed to load resource: the server responded with a status of (401|404|410) .*", message.text
        )
        return message.type == "error" and answered is None

    async def open(self, url: str, view: str) -> None:
        await self.page.goto(url)
        await expect(self.page.locator("body")).to_have_attribute("data-view", view, timeout=wait_ms())

    async def live(self) -> None:
        """Until its live stream is open and its first snapshot rendered."""
        await expect(self.page.locator("#live")).to_have_attribute("data-state", "live", timeout=wait_ms())
        await self.page.wait_for_function("() => Number(document.body.dataset.liveEvents) > 0", timeout=wait_ms())


@pytest.fixture
async def console(browser: Browser) -> AsyncIterator[Console]:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    yield Console(await context.new_page())
    await context.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """Real processes (tests/e2e/conftest.py): a redis-server, gateways and workers the test starts."""
    made = Stack(tmp_path)
    yield made
    made.close()


async def test_the_overview_shows_a_run_started_by_the_api_within_a_second(
    console: Console, held_gateway: Gateway, gates: Gates
) -> None:
    await console.open(f"{held_gateway.url}/console", "overview")  # auth off, from loopback: no key asked
    await console.live()
    # When each new row of the runs list appears, by the page's clock (the test's is the same machine's).
    await console.page.evaluate(
        """() => {
          const rows = document.querySelector("#runs tbody");
          const known = new Set([...rows.rows].map((row) => row.dataset.runId));
          window.appeared = {};
          new MutationObserver(() => {
            for (const row of rows.rows) {
              const id = row.dataset.runId;
              if (!known.has(id) && !(id in window.appeared)) window.appeared[id] = Date.now();
            }
          }).observe(rows, { childList: true });
        }"""
    )
    async with httpx2.AsyncClient(base_url=held_gateway.url, timeout=30) as client:
        response = await client.post("/v1/sessions", json={"input": "hello"})
        created_at = time.time()  # the 201 is here
    assert response.status_code == 201
    run_id = response.json()["run_id"]
    await console.page.wait_for_function("(id) => window.appeared[id]", arg=run_id, timeout=wait_ms())
    appeared_at = await console.page.evaluate("(id) => window.appeared[id]", run_id) / 1000
    row = console.page.locator(f'#runs tbody tr[data-run-id="{run_id}"]')
    await expect(row).to_contain_text("hello")
    print(f"\nthe API's 201 -> the run's row in the console: {appeared_at - created_at:.3f} s")  # noqa: T201
    assert appeared_at - created_at < 1.0
    gates.release(run_id)
    await expect(row).to_have_attribute("data-status", "completed", timeout=wait_ms())  # and it follows the run
    assert console.errors == []


async def test_a_worker_killed_mid_run_shows_the_takeover_on_the_run_s_timeline(console: Console, stack: Stack) -> None:
    stack.env |= {"TOKENTAIL_AGENTS": json.dumps({"held": "tests.support.gates:held"}), "TOKENTAIL_LEASE_MS": "2000"}
    url = await asyncio.to_thread(stack.gateway)
    first = stack.worker()
    await asyncio.to_thread(stack.wait_for_workers, 1)
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        body = {"input": "survive this", "agent": "held", "params": {"tokens": 40}}
        made = (await client.post("/v1/sessions", json=body)).json()
        session_id, run_id = made["session_id"], made["run_id"]
        await eventually(lambda: stack.gates.reached(run_id) == [1], within=30, what="attempt 1 at its gate")
        await console.open(f"{url}/console/sessions/{session_id}/runs/{run_id}", "timeline")
        first_start = console.page.locator("#stages tr[data-stage-kind=started][data-attempt='1']")
        await expect(first_start).to_have_count(1, timeout=wait_ms())
        await console.live()

        async def listed_by_its_worker() -> bool:
            workers = (await client.get("/v1/admin/workers")).json()["workers"]
            return any(run["run_id"] == run_id for worker in workers for run in worker["runs"])

        await eventually(listed_by_its_worker, within=30, what="the first worker's beat lists the run")
        stack.worker()  # the one that takes over
        await asyncio.to_thread(stack.wait_for_workers, 2)
        first.send_signal(signal.SIGKILL)
        await eventually(lambda: 2 in stack.gates.reached(run_id), within=30, what="attempt 2 at the gate")
        stack.gates.release(run_id)

        # Live, without a reload: attempt 2 started by a takeover, and the event it continued from.
        takeover = console.page.locator("#stages tr[data-stage-kind=started][data-attempt='2'][data-reason=takeover]")
        await expect(takeover).to_have_count(1, timeout=wait_ms(30))
        continued = console.page.locator("#stages tr[data-stage-kind=continued]")
        await expect(continued).to_have_attribute("data-attempt", "2")
        await expect(console.page.locator("#view-timeline")).to_have_attribute(
            "data-status", "completed", timeout=wait_ms(30)
        )
        shown = int(await continued.get_attribute("data-from-event-id") or "0")
        timeline = (await client.get(f"/v1/admin/sessions/{session_id}/runs/{run_id}/timeline")).json()
        (stage,) = [stage for stage in timeline["stages"] if stage["kind"] == "continued"]
        assert shown == stage["from_event_id"] > 0
        await expect(continued).to_contain_text(f"#{shown}")
        await expect(console.page.locator("#axis [data-stage-kind=continued]")).to_have_count(1)
        await expect(console.page.locator(f'#events li[data-event-id="{shown}"]')).to_have_count(1)
        await _shows_the_loss_and_no_bar_where_no_worker_held_the_run(console.page)

        # The overview: the dead worker lists nothing it no longer holds, and the run is one taken over.
        await console.open(f"{url}/console", "overview")
        dead = console.page.locator("#workers tbody tr[data-alive=false]")
        await expect(dead).to_have_count(1, timeout=wait_ms(30))  # (silent for 10 s)
        await expect(dead.locator("a")).to_have_count(0)
        await expect(console.page.locator(f'#recent tr[data-run-id="{run_id}"]')).to_have_count(1)
    assert console.errors == []


async def _shows_the_loss_and_no_bar_where_no_worker_held_the_run(page: Page) -> None:
    """The worker lost is marked where it was last heard of; attempt 1's bar ends there, attempt 2's
    starts at the takeover, and no attempt's bar covers the time between, when no worker held the run."""
    lost = page.locator("#axis [data-stage-kind=lost]")
    await expect(lost).to_have_count(1)
    await expect(page.locator("#stages tr[data-stage-kind=lost]")).to_contain_text("worker lost")
    bars = await page.locator("#axis .bar[data-stage-kind=started]").evaluate_all(
        "(bars) => bars.map((bar) => [Number(bar.dataset.attempt), Number(bar.dataset.at), Number(bar.dataset.until)])"
    )
    assert sorted(attempt for attempt, _, _ in bars) == [1, 2]
    lost_at = float(await lost.get_attribute("data-at") or "nan")
    (takeover_at,) = [at for attempt, at, _ in bars if attempt == 2]
    assert takeover_at > lost_at
    for _attempt, at, until in bars:
        assert until <= lost_at or at >= takeover_at  # nothing drawn between
    assert [until for attempt, _, until in bars if attempt == 1] == [lost_at]  # its last sign of life


async def test_a_question_answered_from_the_console_resumes_the_run(
    console: Console, start_gateway: Callable[..., Any], start_worker: Callable[..., Any]
) -> None:
    gateway = await start_gateway(agents=QUESTIONS)
    await start_worker(agents=QUESTIONS)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as client:
        made = (await client.post("/v1/sessions", json={"input": "clean up", "agent": "approve"})).json()
        session_id, run_id = made["session_id"], made["run_id"]

        async def waiting() -> bool:
            return bool((await client.get(f"/v1/sessions/{session_id}")).json()["runs"][0]["status"] == "waiting")

        await eventually(waiting, within=20)
        await console.open(f"{gateway.url}/console/sessions/{session_id}", "session")
        question = console.page.locator(f'#session-questions .question[data-run-id="{run_id}"]')
        await expect(question).to_contain_text("Delete 3 files?")
        input_id = await question.get_attribute("data-input-id")
        await question.locator("[data-action=approve]").click()

        async def completed() -> bool:
            return bool((await client.get(f"/v1/sessions/{session_id}")).json()["runs"][0]["status"] == "completed")

        await eventually(completed, within=20)
        (run,) = (await client.get(f"/v1/sessions/{session_id}")).json()["runs"]
        assert run["output"] == "Checking. Done: deleted."
    assert len(console.dialogs) == 1 and f"{input_id}" in console.dialogs[0]  # it asked to confirm, once
    await expect(console.page.locator(f'#run-tree li[data-run-id="{run_id}"]')).to_have_attribute(
        "data-status", "completed", timeout=wait_ms()
    )
    await expect(question).to_have_count(0)
    await console.page.locator(f'#run-tree a[href$="/runs/{run_id}"]').click()
    await expect(console.page.locator("body")).to_have_attribute("data-view", "timeline", timeout=wait_ms())
    answered = console.page.locator(f'#stages tr[data-stage-kind=answered][data-input-id="{input_id}"]')
    await expect(answered).to_contain_text("by admin:local", timeout=wait_ms())  # the console's caller, auth off
    await expect(console.page.locator("#stages tr[data-stage-kind=ended]")).to_have_attribute(
        "data-status", "completed"
    )
    # The resume after the answer says so; no attempt's bar spans the wait, when no worker held the run.
    resume = console.page.locator("#stages tr[data-stage-kind=started][data-reason=resume]")
    await expect(resume).to_contain_text("resume (attempt 1)")
    starts = await console.page.locator("#axis .bar[data-stage-kind=started]").evaluate_all(
        "(bars) => bars.map((bar) => [bar.dataset.reason, Number(bar.dataset.at), Number(bar.dataset.until)])"
    )
    asked = float(await console.page.locator("#axis [data-stage-kind=question]").get_attribute("data-at") or "nan")
    (resumed_at,) = [at for reason, at, _ in starts if reason == "resume"]
    assert [until for reason, _, until in starts if reason == "start"] == [asked]  # it gave the run up to ask
    assert resumed_at > asked
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", await console.page.locator("#axis-span").inner_text())
    assert console.errors == []


async def test_the_console_s_actions_ask_first_then_cancel_expire_and_delete(
    console: Console, start_gateway: Callable[..., Any], start_worker: Callable[..., Any], gates: Gates
) -> None:
    gateway = await start_gateway(agents=ACTIONS)
    await start_worker(agents=ACTIONS)
    page = console.page
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as client:
        held = (await client.post("/v1/sessions", json={"input": "hold", "agent": "held"})).json()
        asking = (await client.post("/v1/sessions", json={"input": "clean up", "agent": "approve"})).json()

        async def run_of(made: dict[str, Any]) -> dict[str, Any]:
            run: dict[str, Any] = (await client.get(f"/v1/sessions/{made['session_id']}")).json()["runs"][0]
            return run

        await eventually(lambda: gates.reached(held["run_id"]) == [1], within=20, what="the held run at its gate")
        await console.open(f"{gateway.url}/console/sessions/{held['session_id']}/runs/{held['run_id']}", "timeline")
        timeline = page.locator("#view-timeline")
        await expect(timeline).to_have_attribute("data-status", "running", timeout=wait_ms())
        console.confirming = False  # the operator thinks better of it: nothing happens
        await page.click("#cancel-run")
        console.confirming = True
        await page.click("#cancel-run")
        await expect(timeline).to_have_attribute("data-status", "cancelled", timeout=wait_ms())
        assert (await run_of(held))["status"] == "cancelled"
        assert len(console.dialogs) == 2 and held["run_id"] in console.dialogs[0]

        async def waiting() -> bool:
            return bool((await run_of(asking))["status"] == "waiting")

        await eventually(waiting, within=20)
        await console.open(f"{gateway.url}/console/sessions/{asking['session_id']}/runs/{asking['run_id']}", "timeline")
        await page.locator("#run-questions [data-action=expire]").click(timeout=wait_ms())
        await expect(timeline).to_have_attribute("data-status", "failed", timeout=wait_ms())  # as its deadline would
        assert (await run_of(asking))["status"] == "failed"

        await page.click("#run-session")
        await expect(page.locator("body")).to_have_attribute("data-view", "session", timeout=wait_ms())
        await page.click("#delete-session")
        await expect(page.locator("body")).to_have_attribute("data-view", "overview", timeout=wait_ms())
        assert (await client.get(f"/v1/sessions/{asking['session_id']}")).status_code in (404, 410)
    assert len(console.dialogs) == 4
    assert console.errors == []


async def test_a_cancelled_run_is_re_run_and_a_run_forked_from_an_event_each_linked_to_its_source(
    console: Console,
    start_gateway: Callable[..., Any],
    start_worker: Callable[..., Any],
    gates: Gates,
    tool_runs: Path,
) -> None:
    agents = {**ACTIONS, "counting": "tests.agents.counting_agents:COUNTING"}
    gateway = await start_gateway(agents=agents)
    await start_worker(agents=agents)
    page = console.page
    timeline = page.locator("#view-timeline")
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as client:
        # Re-run: a run cancelled at its gate goes on in a fork, from its last recorded step (it recorded none).
        held = (await client.post("/v1/sessions", json={"input": "hold", "agent": "held"})).json()
        await eventually(lambda: gates.reached(held["run_id"]) == [1], within=20, what="the held run at its gate")
        await client.post(f"/v1/sessions/{held['session_id']}/cancel")
        await console.open(f"{gateway.url}/console/sessions/{held['session_id']}/runs/{held['run_id']}", "timeline")
        await expect(timeline).to_have_attribute("data-status", "cancelled", timeout=wait_ms())
        await page.click("#rerun-run")
        await expect(timeline).not_to_have_attribute("data-session-id", held["session_id"], timeout=wait_ms())
        fork = await timeline.get_attribute("data-session-id")
        assert fork and await timeline.get_attribute("data-run-id") == held["run_id"]
        await expect(page.locator("#run-source")).to_have_text(held["session_id"])
        gates.release(held["run_id"])
        await expect(timeline).to_have_attribute("data-status", "completed", timeout=wait_ms())
        assert page.url.endswith(f"/console/sessions/{fork}/runs/{held['run_id']}")

        # Fork from here: at the tool's result, the run goes on in a fork and its tool does not run again.
        made = (await client.post("/v1/sessions", json={"input": "What is 6 * 7?", "agent": "counting"})).json()

        async def completed() -> bool:
            state = (await client.get(f"/v1/sessions/{made['session_id']}")).json()
            return bool(state["status"] == "idle")

        await eventually(completed, within=20, what="the counting run's end")
        await console.open(f"{gateway.url}/console/sessions/{made['session_id']}/runs/{made['run_id']}", "timeline")
        result = page.locator("#events li[data-type='tool.completed'] button[data-action=fork]")
        at = await page.locator("#events li[data-type='tool.completed']").get_attribute("data-event-id")
        await result.click(timeout=wait_ms())
        await expect(timeline).not_to_have_attribute("data-session-id", made["session_id"], timeout=wait_ms())
        await expect(timeline).to_have_attribute("data-status", "completed", timeout=wait_ms())
        await expect(page.locator("#run-source-event")).to_have_text(str(at))
        await expect(page.locator("#stages tr[data-stage-kind=started][data-reason=fork]")).to_have_count(1)
        assert len((await asyncio.to_thread(tool_runs.read_text)).split()) == 1  # ran once: in the source
        forked = await timeline.get_attribute("data-session-id")
        await page.click("#run-source")  # back to the run it came from, whose page lists the fork beside it
        await expect(timeline).to_have_attribute("data-session-id", made["session_id"], timeout=wait_ms())
        await expect(page.locator("#run-forks")).to_have_text(f"{forked} at event {at}", timeout=wait_ms())
        await page.locator("#run-forks a").click()
        await expect(timeline).to_have_attribute("data-session-id", forked or "", timeout=wait_ms())
    assert len(console.dialogs) == 2 and "Re-run" in console.dialogs[0] and f"event {at}" in console.dialogs[1]
    assert console.errors == []


async def test_a_tenant_s_key_sees_its_tenant_only(console: Console, start_gateway: Callable[..., Any]) -> None:
    gateway = await start_gateway(api_keys=SecretStr(f"acme:{KEY_A},beta:{KEY_B}"), secret=SecretStr(SECRET))
    made = {}
    for tenant, key in (("acme", KEY_A), ("beta", KEY_B)):  # no worker: both stay queued
        async with httpx2.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}) as client:
            made[tenant] = (await client.post("/v1/sessions", json={"input": f"{tenant}'s question"})).json()
    beta_session = made["beta"]["session_id"]
    async with httpx2.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {KEY_A}"}) as acme:
        assert (await acme.get(f"/v1/admin/sessions/{beta_session}")).status_code == 404
        assert (await acme.get("/v1/admin/find", params={"q": beta_session})).status_code == 404
        assert (await acme.get(f"/v1/admin/sessions/{made['acme']['session_id']}")).status_code == 200

    page = console.page
    await console.open(f"{gateway.url}/console", "login")
    await page.fill("#key", KEY_A)
    await page.click("#key-save")
    await expect(page.locator("body")).to_have_attribute("data-view", "overview", timeout=wait_ms())
    runs = page.locator("#runs tbody tr")
    await expect(page.locator(f'#runs tr[data-run-id="{made["acme"]["run_id"]}"]')).to_have_count(1, timeout=wait_ms())
    assert set(await runs.evaluate_all("(rows) => rows.map((row) => row.dataset.tenant)")) == {"acme"}
    assert set(await page.locator("#tenants tbody tr").evaluate_all("(rows) => rows.map((r) => r.dataset.tenant)")) <= {
        "acme"
    }
    await expect(page.locator("#who")).to_contain_text("acme")
    await expect(page.locator("#filter-tenant")).to_be_hidden()  # it sees one tenant: nothing to choose
    await expect(page.locator("#filter-user")).to_be_visible()

    await console.open(f"{gateway.url}/console/sessions/{beta_session}", "not-found")  # the key is kept for the tab
    await console.open(f"{gateway.url}/console/sessions/{beta_session}/runs/{made['beta']['run_id']}", "not-found")
    await console.open(f"{gateway.url}/console", "overview")
    await page.fill("#q", beta_session)
    await page.click("#find")
    await expect(page.locator("body")).to_have_attribute("data-view", "not-found", timeout=wait_ms())
    assert console.errors == []


async def test_with_auth_on_the_console_asks_for_a_key_and_with_auth_off_opens_directly(
    browser: Browser, console: Console, start_gateway: Callable[..., Any]
) -> None:
    secured = await start_gateway(
        api_keys=SecretStr(f"acme:{KEY_A}"), secret=SecretStr(SECRET), admin_keys=SecretStr(f"ops:{ADMIN_KEY}")
    )
    page = console.page
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    await console.open(f"{secured.url}/console", "login")
    await page.fill("#key", "not-a-key-0123456789abcdef")
    await page.click("#key-save")
    await expect(page.locator("#key-refused")).to_be_visible(timeout=wait_ms())
    await page.fill("#key", ADMIN_KEY)
    await page.click("#key-save")
    await expect(page.locator("body")).to_have_attribute("data-view", "overview", timeout=wait_ms())
    await expect(page.locator("#who")).to_contain_text("ops")
    await console.live()
    await page.reload()  # the key is kept for the tab: no form again
    await expect(page.locator("body")).to_have_attribute("data-view", "overview", timeout=wait_ms())
    await console.live()
    streams = [request for request in requests if "/v1/admin/stream" in request.url]
    assert streams and all(request.headers.get("authorization") == f"Bearer {ADMIN_KEY}" for request in streams)
    assert all(ADMIN_KEY not in request.url and KEY_A not in request.url for request in requests)  # never in a URL

    other_tab = await browser.new_page()  # another tab: its own sessionStorage, so the form again
    await other_tab.goto(f"{secured.url}/console")
    await expect(other_tab.locator("body")).to_have_attribute("data-view", "login", timeout=wait_ms())
    await other_tab.close()

    open_gateway = await start_gateway()  # auth off: open on loopback
    await console.open(f"{open_gateway.url}/console", "overview")
    await expect(page.locator("#who")).to_have_text("local · auth off")
    await console.live()
    assert console.errors == []


async def test_the_live_stream_comes_back_with_last_event_id_after_its_gateway_stops(
    console: Console, settings: Settings
) -> None:
    page = console.page
    streams: list[Request] = []
    page.on("request", lambda request: streams.append(request) if "/v1/admin/stream" in request.url else None)
    first = await Gateway(settings).start()
    try:
        await console.open(f"{first.url}/console", "overview")
        await console.live()
        seen = int(await page.evaluate("document.body.dataset.liveEvents"))
    finally:
        await first.stop()  # a stopping gateway ends its console streams: the page reconnects
    await expect(page.locator("#live")).to_have_attribute("data-state", "reconnecting", timeout=wait_ms())
    second = await Gateway(settings, port=first.port).start()  # another gateway where it reconnects
    try:
        await expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=wait_ms(30))
        await page.wait_for_function(f"() => Number(document.body.dataset.liveEvents) > {seen}", timeout=wait_ms())
    finally:
        await second.stop()
    resumed = streams[-1].headers.get("last-event-id")
    assert streams[0].headers.get("last-event-id") is None and resumed is not None and int(resumed) > 0
    # What the browser notes of the stream cut and of the refused connections while no gateway listened.
    assert [error for error in console.errors if not error.startswith("Failed to load resource: net::")] == []


async def test_a_run_s_children_are_spans_and_its_usage_is_figures(
    console: Console, start_gateway: Callable[..., Any], start_worker: Callable[..., Any]
) -> None:
    agents = {"parent": "tests.agents.spawning_agents:two_children", "echo": "tests.agents.spawning_agents:echo"}
    gateway = await start_gateway(agents=agents)
    await start_worker(agents=agents)
    async with httpx2.AsyncClient(base_url=gateway.url, timeout=30) as client:
        made = (await client.post("/v1/sessions", json={"input": "go", "agent": "parent"})).json()
        plain = (await client.post("/v1/sessions", json={"input": "What is 2 + 2?"})).json()

        async def ended(made: dict[str, Any]) -> bool:
            runs = (await client.get(f"/v1/sessions/{made['session_id']}")).json()["runs"]
            return all(run["status"] == "completed" for run in runs)

        await eventually(lambda: ended(made), within=30, what="the parent and its children end")
        await eventually(lambda: ended(plain), within=30, what="the plain run ends")

    page = console.page
    await console.open(f"{gateway.url}/console/sessions/{made['session_id']}/runs/{made['run_id']}", "timeline")
    children = page.locator("#axis .lane[data-lane=child] .bar[data-stage-kind=spawned]")
    await expect(children).to_have_count(2, timeout=wait_ms())
    for at, until in await children.evaluate_all(
        "(bars) => bars.map((bar) => [Number(bar.dataset.at), Number(bar.dataset.until)])"
    ):
        assert until > at  # from its spawn to its end

    await console.open(f"{gateway.url}/console/sessions/{plain['session_id']}/runs/{plain['run_id']}", "timeline")
    usage = page.locator("#stages tr[data-stage-kind=usage] .figures")
    await expect(usage).to_contain_text("output_tokens", timeout=wait_ms())
    assert "{" not in await usage.inner_text()  # figures, not JSON
    card, shown = await page.locator("#stages").bounding_box(), await usage.bounding_box()
    assert card is not None and shown is not None
    assert shown["x"] + shown["width"] <= card["x"] + card["width"] + 1  # within the card, not cut at its edge
    assert console.errors == []
