"""Steering from the demo chat page (docs/steering.md): a message sent while the answer streams is
taken in by it, shown where the answer took it in, and the answer goes on after it; a steer for a
run that ended meanwhile goes as the next message; too many waiting steers say why. Each waits with
Playwright's expects (or the stack's state), never a fixed delay."""

import json
import re
from pathlib import Path
from urllib.parse import quote

import httpx2
from playwright.async_api import Browser, Request, Route, expect

from tests.browser.screenshots import screenshot
from tests.browser.test_demo import _session_of
from tests.browser.test_demo_chat import _close, _open, _send
from tests.clients.sse_client import read_events
from tests.fixtures.stack import Gateway
from tests.support.gates import Gates
from tests.support.waiting import eventually
from tokentail.worker.process.main import TokentailWorker

# The scripted model's answer lasts ~15 s at this pace on a quiet machine: the steer, sent once its
# first words show, reaches it while it streams however loaded the machine. The answer to the steer
# is as long.
STEADY = quote(json.dumps({"tokens": 300, "tokens_per_second": 20}))
STEER = "be brief, please"


async def test_a_message_sent_while_the_answer_streams_steers_it_and_the_answer_goes_on_after_it(
    browser: Browser, gateway: Gateway, worker: TokentailWorker, client: httpx2.AsyncClient, tmp_path: Path
) -> None:
    page = await _open(browser, gateway, STEADY)
    await _send(page, "tell me about streams")
    turn = page.locator(".turn")
    await expect(turn).to_have_attribute("data-status", "running", timeout=30_000)
    await expect(turn.locator(".assistant").first).to_contain_text("You asked", timeout=30_000)
    await expect(page.locator("#input")).to_have_attribute("placeholder", re.compile("^Add to the answer"))

    await _send(page, STEER)  # steers the running answer: no second run
    await expect(page.locator("#input")).to_have_value("")
    steer = turn.locator(".steer")
    await expect(steer).to_have_count(1)
    await expect(steer.locator(".steer-text")).to_have_text(STEER)
    await expect(steer).to_have_attribute("data-status", "applied", timeout=30_000)
    await expect(steer.locator(".steer-state")).to_have_text("steer · taken in")
    # The answer goes on after the steer, answering it; the text before it ended where it took it in.
    after = turn.locator(".steer + .assistant")
    await expect(after).to_contain_text(f'You asked: "{STEER}"', timeout=30_000)
    await screenshot(page, tmp_path, "steered-mid-answer")
    await expect(turn).to_have_attribute("data-status", "completed", timeout=60_000)
    await expect(page.locator(".turn")).to_have_count(1)
    await expect(page.locator("#error")).to_be_hidden()
    await screenshot(page, tmp_path, "steered-done")

    sid = _session_of(page)
    state = (await client.get(f"/v1/sessions/{sid}")).json()
    assert [run["input"] for run in state["runs"]] == ["tell me about streams"]
    output = state["runs"][0]["output"]
    before_text = await turn.locator(".assistant.steered").text_content()
    after_text = await after.text_content()
    assert before_text and after_text
    assert output == f"{before_text}\n\n{after_text}"  # the page shows all of it, each piece once
    assert output.startswith("You asked") and STEER not in before_text  # the first answer, cut for the steer
    assert output.count(f'You asked: "{STEER}"') == 1 and after_text.startswith(f'You asked: "{STEER}"')

    # The native API wrote it once: accepted, then applied, never failed.
    received = await read_events(client, f"/v1/sessions/{sid}/events")
    kinds = [kind for _, kind, _ in received.events]
    assert kinds.count("steer.accepted") == 1 and kinds.count("steer.applied") == 1, kinds
    assert "steer.failed" not in kinds
    assert kinds.index("steer.accepted") < kinds.index("steer.applied") < kinds.index("run.completed")
    (accepted,) = received.of("steer.accepted")
    (applied,) = received.of("steer.applied")
    assert accepted["input"] == STEER and applied["steer_id"] == accepted["steer_id"]
    await expect(steer).to_have_attribute("data-steer-id", accepted["steer_id"])

    # A reload rebuilds the same transcript from the events.
    await page.reload()
    await expect(page.locator(".turn[data-status=completed]")).to_have_count(1, timeout=30_000)
    await expect(page.locator(".turn .steer")).to_have_count(1)
    await expect(page.locator(".turn .steer")).to_have_attribute("data-status", "applied")
    assert await page.locator(".turn .steer + .assistant").text_content() == after_text
    await _close(page)


async def test_a_steer_for_a_run_that_ended_meanwhile_goes_as_the_next_message(
    browser: Browser, held_gateway: Gateway, client: httpx2.AsyncClient, gates: Gates, tmp_path: Path
) -> None:
    """`held` (tests/support/gates.py) waits at its gate and takes no steers: a steer it was sent fails
    `not_supported` when it ends. The 429 is the browser's; the 409 is the gateway's, for a run the
    test lets end while the page's steer is on its way."""
    page = await _open(browser, held_gateway)
    await _send(page, "hello")
    first = page.locator(".turn").first
    await expect(first).to_have_attribute("data-status", "running", timeout=30_000)
    await page.wait_for_function("() => document.querySelector('.turn .assistant')?.textContent.length > 5")
    sid = _session_of(page)
    run_id = (await client.get(f"/v1/sessions/{sid}")).json()["runs"][0]["run_id"]

    async def too_many(route: Route) -> None:
        body = {"error": {"type": "too_many_pending_steers", "message": f"8 steers wait for run {run_id}"}}
        await route.fulfill(status=429, headers={"Retry-After": "2"}, json=body)

    await page.route("**/steer", too_many)
    await _send(page, "one too many")
    error = page.locator("#error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("too many messages waiting")
    await expect(page.locator("#input")).to_have_value("one too many")
    await expect(page.locator(".steer")).to_have_count(0)
    await page.unroute("**/steer")

    # A steer its agent never takes: accepted, waiting, then failed when the run ends.
    await _send(page, "in French")
    await expect(error).to_be_hidden()
    deaf = first.locator(".steer")
    await expect(deaf).to_have_attribute("data-status", "accepted")
    await expect(deaf.locator(".steer-state")).to_have_text("steer · waiting to be taken in")

    async def after_the_run_ended(route: Route, request: Request) -> None:
        assert json.loads(request.post_data or "{}")["run_id"] == run_id  # the run the page showed going
        gates.release(run_id)

        async def ended() -> bool:
            return bool((await client.get(f"/v1/sessions/{sid}")).json()["runs"][0]["status"] == "completed")

        await eventually(ended, within=30, what="the first run completed")
        await route.continue_()  # the gateway answers 409 run_not_active

    await page.route("**/steer", after_the_run_ended)
    await _send(page, "and another thing")
    await expect(page.locator(".turn")).to_have_count(2, timeout=30_000)
    await expect(page.locator(".turn").nth(1).locator(".user")).to_have_text("and another thing")
    await expect(page.locator("#input")).to_have_value("")
    await expect(first).to_have_attribute("data-status", "completed", timeout=30_000)
    await expect(deaf).to_have_attribute("data-status", "failed", timeout=30_000)
    await expect(deaf.locator(".steer-state")).to_have_text("steer · not taken in: this agent takes no steers")
    await expect(page.locator(".steer")).to_have_count(1)  # the one that fell back is no steer
    await expect(error).to_be_hidden()
    await screenshot(page, tmp_path, "steer-fell-back")

    runs = (await client.get(f"/v1/sessions/{sid}")).json()["runs"]
    assert [run["input"] for run in runs] == ["hello", "and another thing"]
    gates.release(runs[1]["run_id"])
    await expect(page.locator(".turn[data-status=completed]")).to_have_count(2, timeout=30_000)
    await expect(page.locator("#error")).to_be_hidden()
    await _close(page)
