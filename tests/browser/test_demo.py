"""The demo chat page and its browser client, in a real browser."""

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx2
from playwright.async_api import Browser, Dialog, Page
from pydantic import SecretStr

from tests.fixtures.stack import Gateway
from tests.integration.test_auth import KEY_A, SECRET
from tests.support.gates import Gates

LONG = quote(json.dumps({"tokens": 150, "tokens_per_second": 50}))


async def _ask(page: Page, gateway: Gateway, question: str) -> None:
    await page.goto(f"{gateway.url}/?params={LONG}")
    await page.fill("#input", question)
    await page.click("#send")
    await page.wait_for_function("() => new URL(location.href).searchParams.get('session')")


def _session_of(page: Page) -> str:
    return parse_qs(urlsplit(page.url).query)["session"][0]


async def _release_shown_run(client: httpx2.AsyncClient, page: Page, gates: Gates) -> None:
    """Release the gate (tests/support/gates.py) of the last run of the page's session: it goes on."""
    gates.release((await client.get(f"/v1/sessions/{_session_of(page)}")).json()["runs"][-1]["run_id"])


async def _answer(page: Page) -> str:
    return await page.locator(".turn .assistant").first.text_content() or ""


async def _final_output(client: httpx2.AsyncClient, page: Page) -> Any:
    await page.wait_for_selector(".turn[data-status=completed]", timeout=30_000)
    return (await client.get(f"/v1/sessions/{_session_of(page)}")).json()["runs"][0]["output"]


async def test_text_streams_in_and_a_reload_mid_stream_neither_loses_nor_repeats_it(
    browser: Browser, held_gateway: Gateway, client: httpx2.AsyncClient, gates: Gates
) -> None:
    page = await browser.new_page()
    await _ask(page, held_gateway, "hello")
    await page.wait_for_function("() => document.querySelector('.turn .assistant')?.textContent.length > 20")
    before = await _answer(page)  # half the answer: the run waits at its gate
    assert await page.locator("#state").text_content() in ("live", "connecting")
    await page.reload()
    await _release_shown_run(client, page, gates)
    output = await _final_output(client, page)
    assert output == await _answer(page) and output.startswith(before) and len(output) > len(before)
    assert await page.locator(".turn").count() == 1


async def test_going_offline_mid_stream_and_back_resumes(
    browser: Browser, gateway: Gateway, worker: Any, client: httpx2.AsyncClient
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await _ask(page, gateway, "hello")
    await page.wait_for_function("() => document.querySelector('.turn .assistant')?.textContent.length > 20")
    await context.set_offline(True)
    await page.wait_for_timeout(1500)
    await context.set_offline(False)
    assert await _final_output(client, page) == await _answer(page)
    await context.close()


async def test_stop_cancels_the_run(browser: Browser, held_gateway: Gateway, client: httpx2.AsyncClient) -> None:
    page = await browser.new_page()
    await _ask(page, held_gateway, "hello")  # the run waits at its gate for the stop
    await page.wait_for_function("() => document.querySelector('.turn .assistant')?.textContent.length > 5")
    await page.click("#stop")
    await page.wait_for_selector(".turn[data-status=cancelled]", timeout=10_000)
    run = (await client.get(f"/v1/sessions/{_session_of(page)}")).json()["runs"][0]
    assert run["status"] == "cancelled"
    assert "cancelled" in (await page.locator(".turn .progress").first.text_content() or "")


async def test_tool_progress_and_a_second_turn(
    browser: Browser, gateway: Gateway, worker: Any, client: httpx2.AsyncClient
) -> None:
    page = await browser.new_page()
    await page.goto(gateway.url)
    await page.fill("#input", "What is 12 * (3 + 4)?")
    await page.click("#send")
    await page.wait_for_selector(".turn[data-status=completed]", timeout=15_000)
    assert "Running calculator... done" in (await page.locator(".turn .progress").first.text_content() or "")
    assert "The calculator says 84." in await _answer(page)
    await page.fill("#input", "thanks")
    await page.click("#send")
    await page.wait_for_function("() => document.querySelectorAll('.turn[data-status=completed]').length === 2")
    runs = (await client.get(f"/v1/sessions/{_session_of(page)}")).json()["runs"]
    texts = await page.locator(".turn .assistant").all_text_contents()
    assert texts == [run["output"] for run in runs]


async def test_a_deleted_session_stops_the_client_instead_of_retrying_for_ever(
    browser: Browser, gateway: Gateway, client: httpx2.AsyncClient
) -> None:
    page = await browser.new_page()
    await _ask(page, gateway, "hello")  # no worker: the run stays queued and the stream open
    await page.wait_for_selector("#state[data-state=live]")
    await client.delete(f"/v1/sessions/{_session_of(page)}")
    await page.wait_for_selector("#state[data-state=gone]", timeout=20_000)


async def test_with_auth_on_the_page_asks_for_a_key_and_streams_with_its_token_across_a_reload(
    browser: Browser, start_gateway: Callable[..., Any], worker: Any
) -> None:
    # A token lifetime under the client's refresh margin: every (re)connect refreshes it first.
    gateway = await start_gateway(
        api_keys=SecretStr(f"acme:{KEY_A}"), secret=SecretStr(SECRET), stream_token_ttl_seconds=30
    )
    page = await browser.new_page()
    prompts: list[str] = []

    async def give_key(dialog: Dialog) -> None:
        prompts.append(dialog.message)
        await dialog.accept(KEY_A)

    page.on("dialog", give_key)
    event_urls: list[str] = []
    page.on("request", lambda request: event_urls.append(request.url) if "/events" in request.url else None)
    await _ask(page, gateway, "hello")
    assert prompts == ["This gateway needs an API key:"]
    await page.wait_for_function("() => document.querySelector('.turn .assistant')?.textContent.length > 10")
    await page.reload()
    async with httpx2.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {KEY_A}"}) as client:
        assert await _final_output(client, page) == await _answer(page)
    assert prompts == ["This gateway needs an API key:"]  # the key was kept for the tab
    assert event_urls and all("token=v1." in url for url in event_urls)  # EventSource used the stream token
    assert all(KEY_A not in url for url in event_urls)  # and never the API key
