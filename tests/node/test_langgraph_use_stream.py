"""useStream, LangGraph's React hook (`@langchain/langgraph-sdk/react`), in Chromium (tests/node/langgraph_page.tsx)
against a tokentail gateway and worker through the LangGraph routes (docs/langgraph.md): at the release users
install (1.15.0, npm `latest`) and at 2.0.0 beside it (the npm alias `langgraph-sdk-2`). As an app uses it: its
backend made the chat (a thread is a chat) and handed the page the chat's id and a chat token; the hook sends,
streams, rejoins the answer after a reload (`reconnectOnMount`), stops, and answers an interrupt. The page is
at the gateway's origin (an app proxying the API under its own), and, for the reload, at an origin of its own."""

import asyncio
import functools
import json
import re
import subprocess
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import pytest
from playwright.async_api import Browser, Page, Route, expect

from tests.node.conftest import HELD, HERE, SLOW, ChatStack, _chat_stack
from tests.support.waiting import eventually, scaled
from tokentail.worker.providers.scripted import DEFAULT_TOKENS, scripted_tokens

pytestmark = pytest.mark.langgraph


ESBUILD = HERE / "node_modules" / "@esbuild" / "linux-x64" / "bin" / "esbuild"
# The package each page imports as `@langchain/langgraph-sdk`, by the version it must be.
SDKS = {"1.15.0": "@langchain/langgraph-sdk", "2.0.0": "langgraph-sdk-2"}
TOKENS = scripted_tokens("hello", SLOW["tokens"])  # HELD's answer: SLOW's text
ANSWER = "".join(TOKENS)
BEFORE_THE_GATE = "".join(TOKENS[: len(TOKENS) // 2])  # what `held` streams before it waits (tests/support/gates.py)
HTML = '<link rel="icon" href="data:,"><div id="root"></div><script type="module" src="page.js"></script>'
Origin = Literal["gateway", "own"]
WAIT_MS = scaled(30) * 1000  # for what the page shows: Playwright's expect waits for it, and fails only after this


@pytest.fixture(scope="module")
def chats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatStack]:
    """The suite's gateway and worker (tests/node/conftest.py), letting pages on localhost call them: one
    stack for the module, whose tests kill nothing and each use threads of their own."""
    yield from _chat_stack(tmp_path_factory.mktemp("chats"), TOKENTAIL_CORS_ORIGINS="http://localhost:*")


@dataclass(frozen=True)
class Site:
    folder: Path  # <version>/index.html and page.js
    url: str  # where it is served: an origin of its own


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
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
    yield Site(root, f"http://localhost:{server.server_address[1]}")  # localhost: not 127.0.0.1:<gateway>'s origin
    server.shutdown()
    server.server_close()


@pytest.fixture(params=list(SDKS))
def sdk(request: pytest.FixtureRequest) -> str:
    version: str = request.param
    return version


APP = "/app"  # where the page is at the gateway's origin


async def open_chat(
    browser: Browser,
    site: Site,
    sdk: str,
    chats: ChatStack,
    thread: str,
    session: Mapping[str, Any],
    origin: Origin = "gateway",
    history: bool = False,
) -> Page:
    """The page of the chat `thread` (made with `session`'s agent and params), its useStream `sdk`'s; at the
    gateway's origin, as an app that proxies the API under its own (a Next.js rewrite) has it, or at an
    origin of its own (a Vite dev server's), calling the gateway across origins (CORS)."""
    token = chats.chat(thread, **session)
    page = await browser.new_page()
    page.set_default_timeout(WAIT_MS)
    query = {"gateway": chats.url, "thread": thread, "token": token, "assistant": session.get("agent", "assistant")}
    if history:  # the page reads the thread's history: edits and the branch switcher (langgraph_page.tsx)
        query["history"] = "1"
    if origin == "own":  # with the token as useStream's `apiKey` (LangGraph's docs' way: the header x-api-key)
        await page.goto(f"{site.url}/{sdk}/?{urlencode({**query, 'key': 'apiKey'})}")
        return page

    async def serve(route: Route) -> None:
        path = urlsplit(route.request.url).path.removeprefix(APP + "/")
        await route.fulfill(path=site.folder / (path + "index.html" if path.endswith("/") else path))

    await page.route(f"{chats.url}{APP}/**", serve)
    await page.goto(f"{chats.url}{APP}/{sdk}/?{urlencode(query)}")
    return page


async def send(page: Page, text: str) -> None:
    await page.fill("#input", text)
    await page.click("#send")


async def logged(page: Page) -> tuple[list[dict[str, Any]], list[int]]:
    """The requests useStream made, in order, across the page's reloads, and each length the answer was
    shown at (langgraph_page.tsx logs both)."""
    entries: list[dict[str, Any]] = json.loads(await page.evaluate("sessionStorage.getItem('tokentail:log')"))
    return [entry for entry in entries if "method" in entry], [entry["shown"] for entry in entries if "shown" in entry]


def shapes(requests: list[dict[str, Any]], thread: str) -> list[str]:
    """The requests as `METHOD path [Last-Event-ID: id]`, the test's ids written {thread}, {run}, {seq}."""
    shaped = []
    for request in requests:
        line = f"{request['method']} {request['path']}".replace(thread, "{thread}")
        line = re.sub(r"checkpoint_id=\d+", "checkpoint_id={seq}", re.sub(r"\br_[\w-]+", "{run}", line))
        shaped.append(line + (f" Last-Event-ID: {request['lastEventId']}" if "lastEventId" in request else ""))
    return shaped


def last_run(chats: ChatStack, thread: str) -> dict[str, Any]:
    run: dict[str, Any] = chats.session(thread)["runs"][-1]
    return run


def expect_cors_for_use_stream(chats: ChatStack) -> None:
    """A page on another origin sends useStream's `apiKey` as `x-api-key`, which CORS's preflight must
    allow, and learns its run's id from the stream's `Content-Location` (keeping it for
    `reconnectOnMount`, and cancelling that run on `stop()`), which CORS must expose (gateway/cors.py)."""
    origin = {"Origin": "http://localhost:1"}
    preflight = chats.http.options(
        "/langgraph/threads/t/runs/stream",
        headers={**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"},
    )
    exposed = chats.http.get("/readyz", headers=origin).headers.get("access-control-expose-headers", "")
    missing = [
        *([] if preflight.status_code == 200 else ["x-api-key not allowed in a preflight"]),
        *(f"{name} not exposed" for name in ("Content-Location", "Location") if name.lower() not in _names(exposed)),
    ]
    assert not missing, missing


def _names(header: str) -> set[str]:
    return {name.strip().lower() for name in header.split(",")}


@pytest.mark.parametrize("origin", ["gateway", "own"])
async def test_use_stream_sends_streams_and_reattaches_after_a_reload_showing_the_answer_once(
    browser: Browser, site: Site, sdk: str, chats: ChatStack, origin: Origin
) -> None:
    thread = f"reload-{uuid.uuid4().hex[:8]}"
    if origin == "own":
        expect_cors_for_use_stream(chats)
    page = await open_chat(browser, site, sdk, chats, thread, HELD, origin)
    await send(page, "hello")
    await expect(page.locator("p.ai")).to_have_text(BEFORE_THE_GATE, timeout=WAIT_MS)  # streamed, then held at the gate
    run = last_run(chats, thread)
    assert await page.evaluate(f"sessionStorage.getItem('lg:stream:{thread}')") == run["run_id"]
    await page.reload()  # mid-answer: the hook finds the run's id in sessionStorage and rejoins it
    await expect(page.locator("p.human")).to_have_text("hello", timeout=WAIT_MS)
    await expect(page.locator("p.ai")).to_have_text(BEFORE_THE_GATE, timeout=WAIT_MS)
    await eventually(lambda: rejoined(page, thread), within=30)
    # The rest comes by the rejoined stream: the thread's reads wait meanwhile (each version reads the
    # thread when its stream ends), so no read shows it instead.
    reading = asyncio.Event()

    async def held(read: Route) -> None:
        await reading.wait()
        await read.continue_()

    await page.route(f"{chats.url}/langgraph/threads/{thread}/state", held)
    chats.release(thread)
    await expect(page.locator("p.ai")).to_have_text(ANSWER, timeout=WAIT_MS)
    await expect(page.locator("p.ai")).to_have_count(1)
    reading.set()
    await expect(page.locator("#status")).to_have_text("ready", timeout=WAIT_MS)
    await expect(page.locator("p.ai")).to_have_text(ANSWER)
    await expect(page.locator("p.human")).to_have_count(1)
    run = last_run(chats, thread)
    assert run["status"] == "completed" and run["output"] == ANSWER
    assert await page.evaluate(f"sessionStorage.getItem('lg:stream:{thread}')") is None, "the hook forgot the run"
    requests, shown = await logged(page)
    assert shapes(requests, thread) == SEND_RELOAD_REJOIN[sdk]
    started = requests[1]["body"]
    assert started["stream_resumable"] is True and started["on_disconnect"] == "continue"
    assert started["stream_mode"] == ["messages-tuple", "values"] and started["assistant_id"] == "held"
    assert all(request["status"] == 200 for request in requests), requests
    assert max(shown) == len(ANSWER), f"the answer was shown longer than it is, for a moment: {shown}"


async def rejoined(page: Page, thread: str) -> None:
    """The reloaded page has rejoined its run's stream from its start."""
    requests, _ = await logged(page)
    lines = shapes(requests, thread)
    assert any("/runs/{run}/stream?" in line and line.endswith("Last-Event-ID: -1") for line in lines), lines


# The requests useStream makes, in order, as the page logged them (`{thread}`, `{run}`: the test's;
# `{seq}`: a checkpoint, the session's event id). 1.15.0 rejoins once it has read the thread (passing its
# checkpoint), and asks whether a run is over when its stream ends with no `end` (LangGraph's server sends
# none); 2.0.0 rejoins at once, and reads the thread after every run.
SEND_RELOAD_REJOIN = {
    "1.15.0": [
        "GET /threads/{thread}/state",  # the page opens
        "POST /threads/{thread}/runs/stream",  # submit()
        "GET /threads/{thread}/state",  # reloaded
        "GET /threads/{thread}/runs/{run}/stream?cancel_on_disconnect=0&checkpoint_id={seq} Last-Event-ID: -1",
        "GET /threads/{thread}/runs/{run}",  # its stream ended: is the run over?
    ],
    "2.0.0": [
        "GET /threads/{thread}/state",
        "POST /threads/{thread}/runs/stream",
        "GET /threads/{thread}/state",
        "GET /threads/{thread}/runs/{run}/stream?cancel_on_disconnect=0 Last-Event-ID: -1",
        "GET /threads/{thread}/state",
    ],
}
STOP = {
    "1.15.0": [
        "GET /threads/{thread}/state",
        "POST /threads/{thread}/runs/stream",
        "POST /threads/{thread}/runs/{run}/cancel?wait=0&action=interrupt",  # stop(): the run it kept
        "GET /threads/{thread}/state",  # what the server kept of the answer
    ],
    "2.0.0": [
        "GET /threads/{thread}/state",
        "POST /threads/{thread}/runs/stream",
        "POST /threads/{thread}/runs/{run}/cancel?wait=0&action=interrupt",
    ],
}
INTERRUPT = {
    "1.15.0": [
        "GET /threads/{thread}/state",
        "POST /threads/{thread}/runs/stream",  # the stream ends at the question
        "GET /threads/{thread}/runs/{run}",
        "POST /threads/{thread}/runs/stream",  # submit(undefined, {command: {resume}})
        "GET /threads/{thread}/runs/{run}",
    ],
    "2.0.0": [
        "GET /threads/{thread}/state",
        "POST /threads/{thread}/runs/stream",
        "POST /threads/{thread}/runs/stream",
    ],
}


async def test_use_stream_stop_cancels_the_run(browser: Browser, site: Site, sdk: str, chats: ChatStack) -> None:
    thread = f"stop-{uuid.uuid4().hex[:8]}"
    page = await open_chat(browser, site, sdk, chats, thread, HELD)
    await send(page, "hello")
    await expect(page.locator("p.ai")).to_have_text(BEFORE_THE_GATE, timeout=WAIT_MS)
    await page.click("#stop")  # while the run waits at its gate
    await expect(page.locator("#status")).to_have_text("ready", timeout=WAIT_MS)

    async def cancelled() -> None:
        assert last_run(chats, thread)["status"] == "cancelled"

    await eventually(cancelled, within=20)
    await expect(page.locator("p.ai")).to_have_text(BEFORE_THE_GATE)  # what was written stays shown
    await expect_no_breakpoint(page)
    requests, _ = await logged(page)
    assert shapes(requests, thread) == STOP[sdk]
    assert requests[2]["status"] in (200, 202, 204), requests


async def expect_no_breakpoint(page: Page) -> None:
    """No interrupt shown for the run stop() cut: 1.15.0 reads the thread as it stops, and a read before the
    cancel landed must not name the run still going in `next`, which it would show as a breakpoint
    (`{"when": "breakpoint"}`): `next` names a node only while the thread is interrupted (threads.py)."""
    assert await page.locator("pre.interrupt").all_text_contents() == []


async def test_use_stream_shows_an_interrupt_and_resumes_it_with_a_command(
    browser: Browser, site: Site, sdk: str, chats: ChatStack
) -> None:
    thread = f"interrupt-{uuid.uuid4().hex[:8]}"
    page = await open_chat(browser, site, sdk, chats, thread, {"agent": "approve"})
    await send(page, "clean up")
    shown = page.locator("pre.interrupt")
    await expect(shown).to_have_count(1, timeout=WAIT_MS)
    # The run's stream ended at its question, as LangGraph's do.
    await expect(page.locator("#status")).to_have_text("ready", timeout=WAIT_MS)
    asked = last_run(chats, thread)["asked"][0]
    interrupt = json.loads(await shown.inner_text())
    assert interrupt["id"] == asked["input_id"] == await shown.get_attribute("data-id")
    assert interrupt["value"]["prompt"] == "Delete 3 files?" and interrupt["value"]["kind"] == "approval", interrupt
    await page.click("#resume")  # submit(undefined, {command: {resume: {"approved": true}}})
    await expect(shown).to_have_count(0, timeout=WAIT_MS)
    await expect(page.locator("#status")).to_have_text("ready", timeout=WAIT_MS)
    await expect(page.locator("p.tool")).to_have_text("deleted")
    run = last_run(chats, thread)
    assert run["status"] == "completed" and run["output"] == "Checking. Done: deleted."
    assert "".join(await page.locator("p.ai").all_text_contents()) == run["output"]
    requests, _ = await logged(page)
    asked_for, resumed = (request["body"] for request in requests if request["method"] == "POST")
    assert "command" not in asked_for and "input" not in resumed
    assert resumed["command"] == {"resume": {"approved": True}}
    assert all(request["status"] == 200 for request in requests), requests
    assert shapes(requests, thread) == INTERRUPT[sdk]


async def test_use_stream_edits_a_message_into_a_branch_and_switches_between_the_branches(
    browser: Browser, site: Site, sdk: str, chats: ChatStack
) -> None:
    thread = f"branches-{uuid.uuid4().hex[:8]}"
    page = await open_chat(browser, site, sdk, chats, thread, {}, history=True)
    hello, goodbye = ("".join(scripted_tokens(said, DEFAULT_TOKENS)) for said in ("hello", "goodbye"))
    await send(page, "hello")
    await expect(page.locator("p.ai")).to_have_text(hello, timeout=WAIT_MS)
    await expect(page.locator("#status")).to_have_text("ready", timeout=WAIT_MS)
    await expect(page.locator(".branches")).to_have_count(0)

    # The edit: submit({messages}, {checkpoint: the human message's parent checkpoint}), the thread's start.
    await page.fill("#edit", "goodbye")
    await page.click("button.edit")
    await expect(page.locator("p.human")).to_have_text("goodbye", timeout=WAIT_MS)
    await expect(page.locator("p.ai")).to_have_text(goodbye, timeout=WAIT_MS)
    await expect(page.locator("#status")).to_have_text("ready", timeout=WAIT_MS)
    switcher = page.locator(".branches[data-of=human]")
    await expect(switcher).to_have_attribute("data-count", "2", timeout=WAIT_MS)
    await expect(switcher).to_have_attribute("data-at", "1")  # the newest: the edit's branch
    assert [run["input"] for run in chats.session(thread)["runs"]] == ["goodbye"]  # the thread goes on in it

    await page.click(".branches[data-of=human] .prev")  # the branch before the edit, as the history has it
    await expect(page.locator("p.human")).to_have_text("hello", timeout=WAIT_MS)
    await expect(page.locator("p.ai")).to_have_text(hello)
    await expect(switcher).to_have_attribute("data-at", "0")
    await page.click(".branches[data-of=human] .next")
    await expect(page.locator("p.human")).to_have_text("goodbye", timeout=WAIT_MS)
    await expect(page.locator("p.ai")).to_have_text(goodbye)

    # Regenerate: submit(undefined, {checkpoint: the answer's parent checkpoint}), inside its run (its input
    # taken in): the run goes on from there in a branch, and the answer has two branches of its own.
    await page.click("button.regenerate")
    answers = page.locator(".branches[data-of=ai]")
    await expect(answers).to_have_attribute("data-count", "2", timeout=WAIT_MS)
    await expect(page.locator("#status")).to_have_text("ready", timeout=WAIT_MS)
    await expect(page.locator("p.human")).to_have_text("goodbye")
    await expect(page.locator("p.ai")).to_have_text(goodbye)  # the scripted model says it again
    assert [run["input"] for run in chats.session(thread)["runs"]] == ["goodbye"]
    await page.close()
