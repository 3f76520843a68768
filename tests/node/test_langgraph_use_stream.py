"""useStream, LangGraph's React hook (`@langchain/langgraph-sdk/react`), in Chromium on a page of another
origin (tests/node/langgraph_page.tsx), against a tokentail gateway and worker through the LangGraph routes
(docs/langgraph.md): at the release users install (1.15.0, npm `latest`) and at 2.0.0 beside it (the npm
alias `langgraph-sdk-2`). As an app uses it: its backend made the chat (a thread is a chat) and handed the
page the chat's id and a chat token; the hook sends, streams, rejoins the answer after a reload
(`reconnectOnMount`), stops, and answers an interrupt."""

import functools
import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser import conftest as browser_tests
from tests.node.conftest import HELD, HERE, ChatStack, _chat_stack
from tests.support.waiting import eventually, scaled
from tokentail.worker.providers.scripted import scripted_tokens

pytestmark = pytest.mark.langgraph

browser = browser_tests.browser  # the fixture: Debian's Chromium, driven by Playwright

ESBUILD = HERE / "node_modules" / "@esbuild" / "linux-x64" / "bin" / "esbuild"
# The package each page imports as `@langchain/langgraph-sdk`, by the version it must be.
SDKS = {"1.15.0": "@langchain/langgraph-sdk", "2.0.0": "langgraph-sdk-2"}
TOKENS = scripted_tokens("hello", HELD["params"]["tokens"])
ANSWER = "".join(TOKENS)
BEFORE_THE_GATE = "".join(TOKENS[: len(TOKENS) // 2])  # what `held` streams before it waits (tests/support/gates.py)
HTML = '<link rel="icon" href="data:,"><div id="root"></div><script type="module" src="page.js"></script>'
WAIT_MS = scaled(30) * 1000  # for what the page shows: Playwright's expect waits for it, and fails only after this


@pytest.fixture
def chats(tmp_path: Path) -> Iterator[ChatStack]:
    """The suite's gateway and worker (tests/node/conftest.py), letting pages on localhost call them."""
    yield from _chat_stack(tmp_path, TOKENTAIL_CORS_ORIGINS="http://localhost:*")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The page bundled once per SDK version (`<site>/<version>/`), as a frontend's build would, served
    from an origin that is not the gateway's."""
    if not ESBUILD.exists():
        pytest.fail(f"{ESBUILD} is missing: run ./scripts/install test (it runs npm ci in tests/node)")
    root = tmp_path_factory.mktemp("langgraph-site")
    for version, package in SDKS.items():
        installed = json.loads((HERE / "node_modules" / package / "package.json").read_text())["version"]
        assert installed == version, f"tests/node's lockfile pins {package} at {installed}, not {version}"
        folder = root / version
        folder.mkdir()
        subprocess.run(
            [ESBUILD, "langgraph_page.tsx", "--bundle", "--format=esm", "--target=es2022", "--jsx=automatic",
             f"--alias:@langchain/langgraph-sdk={package}", f"--outfile={folder / 'page.js'}", "--log-level=warning"],
            cwd=HERE, check=True,
        )  # fmt: skip
        (folder / "index.html").write_text(HTML)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://localhost:{server.server_address[1]}"  # localhost: another origin than 127.0.0.1:<gateway>
    server.shutdown()
    server.server_close()


@pytest.fixture(params=list(SDKS))
def sdk(request: pytest.FixtureRequest) -> str:
    version: str = request.param
    return version


async def open_chat(browser: Browser, site: str, sdk: str, chats: ChatStack, thread: str, **session: Any) -> Page:
    """The page of the chat `thread` (made with `session`'s agent and params), its useStream `sdk`'s."""
    token = chats.chat(thread, **session)
    page = await browser.new_page()
    page.set_default_timeout(WAIT_MS)
    query = {"gateway": chats.url, "thread": thread, "token": token, "assistant": session.get("agent", "assistant")}
    await page.goto(f"{site}/{sdk}/?{urlencode(query)}")
    return page


async def send(page: Page, text: str) -> None:
    await page.fill("#input", text)
    await page.click("#send")


async def requests(page: Page) -> list[dict[str, Any]]:
    """The requests useStream made, in order, across the page's reloads (langgraph_page.tsx logs them)."""
    logged: list[dict[str, Any]] = json.loads(await page.evaluate("sessionStorage.getItem('tokentail:requests')"))
    return logged


def last_run(chats: ChatStack, thread: str) -> dict[str, Any]:
    run: dict[str, Any] = chats.session(thread)["runs"][-1]
    return run


async def test_use_stream_sends_streams_and_reattaches_after_a_reload_showing_the_answer_once(
    browser: Browser, site: str, sdk: str, chats: ChatStack
) -> None:
    thread = f"reload-{uuid.uuid4().hex[:8]}"
    page = await open_chat(browser, site, sdk, chats, thread, **HELD)
    await send(page, "hello")
    await expect(page.locator("p.ai")).to_have_text(BEFORE_THE_GATE, timeout=WAIT_MS)  # streamed, then held at the gate
    run = last_run(chats, thread)
    assert await page.evaluate(f"sessionStorage.getItem('lg:stream:{thread}')") == run["run_id"]
    await page.reload()  # mid-answer: the hook finds the run's id in sessionStorage and rejoins it
    await expect(page.locator("p.human")).to_have_text("hello", timeout=WAIT_MS)
    await expect(page.locator("p.ai")).to_have_text(BEFORE_THE_GATE, timeout=WAIT_MS)
    await expect(page.locator("#status")).to_have_text("loading", timeout=WAIT_MS)
    chats.release(thread)
    await expect(page.locator("#status")).to_have_text("ready", timeout=WAIT_MS)
    await expect(page.locator("p.ai")).to_have_text(ANSWER, timeout=WAIT_MS)  # once: one message, the text not twice
    await expect(page.locator("p.human")).to_have_text("hello", timeout=WAIT_MS)
    run = last_run(chats, thread)
    assert run["status"] == "completed" and run["output"] == ANSWER
    assert await page.evaluate(f"sessionStorage.getItem('lg:stream:{thread}')") is None, "the hook forgot the run"
    calls = await requests(page)
    print(sdk, json.dumps(calls, indent=1))  # noqa: T201
    started = next(call for call in calls if call["path"] == f"/threads/{thread}/runs/stream")
    assert started["method"] == "POST" and started["status"] == 200
    assert started["body"]["stream_resumable"] is True and started["body"]["on_disconnect"] == "continue"
    rejoined = next(call for call in calls if call["path"].startswith(f"/threads/{thread}/runs/{run['run_id']}/stream"))
    assert rejoined["method"] == "GET" and rejoined["lastEventId"] == "-1" and rejoined["status"] == 200


async def test_use_stream_stop_cancels_the_run(browser: Browser, site: str, sdk: str, chats: ChatStack) -> None:
    thread = f"stop-{uuid.uuid4().hex[:8]}"
    page = await open_chat(browser, site, sdk, chats, thread, **HELD)
    await send(page, "hello")
    await expect(page.locator("p.ai")).to_have_text(BEFORE_THE_GATE, timeout=WAIT_MS)
    await page.click("#stop")  # while the run waits at its gate
    await expect(page.locator("#status")).to_have_text("ready", timeout=WAIT_MS)

    async def cancelled() -> dict[str, Any]:
        run = last_run(chats, thread)
        assert run["status"] == "cancelled", run["status"]
        return run

    run = await eventually(cancelled, within=20)
    assert run["output"] == BEFORE_THE_GATE
    await expect(page.locator("p.ai")).to_have_text(BEFORE_THE_GATE, timeout=WAIT_MS)  # what was written stays shown
    calls = await requests(page)
    print(sdk, json.dumps(calls, indent=1))  # noqa: T201
    cancel = next(call for call in calls if call["path"].startswith(f"/threads/{thread}/runs/{run['run_id']}/cancel"))
    assert cancel["method"] == "POST" and cancel["status"] in (200, 202, 204)


async def test_use_stream_shows_an_interrupt_and_resumes_it_with_a_command(
    browser: Browser, site: str, sdk: str, chats: ChatStack
) -> None:
    thread = f"interrupt-{uuid.uuid4().hex[:8]}"
    page = await open_chat(browser, site, sdk, chats, thread, agent="approve")
    await send(page, "clean up")
    shown = page.locator("pre.interrupt")
    await expect(shown).to_have_count(1, timeout=WAIT_MS)
    # The run's stream ended at its question, as LangGraph's do.
    await expect(page.locator("#status")).to_have_text("ready", timeout=WAIT_MS)
    run = last_run(chats, thread)
    asked = run["asked"][0]
    assert await shown.get_attribute("data-id") == asked["input_id"]
    value = json.loads(await shown.inner_text())
    assert value["prompt"] == "Delete 3 files?" and value["kind"] == "approval", value
    await page.click("#resume")  # submit(undefined, {command: {resume: {"approved": true}}})
    await expect(shown).to_have_count(0, timeout=WAIT_MS)
    await expect(page.locator("#status")).to_have_text("ready", timeout=WAIT_MS)
    run = last_run(chats, thread)
    assert run["status"] == "completed" and run["output"] == "Checking. Done: deleted."
    shown_text = "".join(await page.locator("p.ai").all_inner_texts())
    assert shown_text == run["output"]
    assert await page.locator("p.tool").all_inner_texts() == ["deleted"]
    calls = await requests(page)
    print(sdk, json.dumps(calls, indent=1))  # noqa: T201
    resumed = [call for call in calls if call["path"] == f"/threads/{thread}/runs/stream"][-1]
    assert resumed["body"]["command"] == {"resume": {"approved": True}} and resumed["status"] == 200
