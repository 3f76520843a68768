"""The demo chat page as people use it: a long answer that scrolls, sends that fail, New chat, Stop,
markdown from a model that must stay inert, the connection state and the event inspector. Each
waits with Playwright's expects, never a fixed delay; screenshots go under the test's tmp_path and
are decoded and checked (their path is in the failure message)."""

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
from playwright.async_api import Browser, Dialog, Page, Request, Route, expect
from pydantic import SecretStr

from tests.browser.screenshots import screenshot
from tests.browser.test_demo import _answer, _final_output, _release_shown_run, _session_of
from tests.fixtures.stack import Gateway
from tests.integration.test_auth import KEY_A, SECRET
from tests.support.gates import Gates

ACCENT = (0x2F, 0x6F, 0xED)  # the Send button's blue
VIEWPORT = {"width": 900, "height": 600}
# Long enough to overflow the transcript many times over (half of it, where `held` waits: tests/support/gates.py).
LONG = quote(json.dumps({"tokens": 1200, "tokens_per_second": 200}))
# Longer than any test, however loaded the machine: the test stops it.
ENDLESS = quote(json.dumps({"tokens": 100_000, "tokens_per_second": 200}))
MEDIUM = quote(json.dumps({"tokens": 240, "tokens_per_second": 60}))
SHORT = quote(json.dumps({"tokens": 40, "tokens_per_second": 40}))

GEOMETRY = """() => {
  const rect = (selector) => {
    const all = document.querySelectorAll(selector);
    const r = all[all.length - 1].getBoundingClientRect();
    return { top: r.top, bottom: r.bottom, left: r.left, right: r.right };
  };
  const box = document.getElementById("transcript");
  return {
    viewport: { width: innerWidth, height: innerHeight },
    page: { scrollHeight: document.scrollingElement.scrollHeight },
    transcript: {
      ...rect("#transcript"), scrollHeight: box.scrollHeight, clientHeight: box.clientHeight, scrollTop: box.scrollTop,
    },
    input: rect("#input"),
    last: rect(".turn .assistant"),
  };
}"""


PAGE_ERRORS: dict[Page, list[str]] = {}  # uncaught errors of the page's own script, by page


async def _open(browser: Browser, gateway: Gateway, params: str = MEDIUM) -> Page:
    page = await browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
    errors = PAGE_ERRORS.setdefault(page, [])
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{gateway.url}/?params={params}")
    return page


async def _close(page: Page) -> None:
    errors = PAGE_ERRORS.pop(page, [])
    await page.close()
    assert errors == [], f"the page threw: {errors}"


async def _send(page: Page, text: str) -> None:
    await page.fill("#input", text)
    await page.click("#send")


async def _assert_composer_and_last_message_in_view(page: Page, shot: Path) -> None:
    await expect(page.locator("#input")).to_be_in_viewport()
    await expect(page.locator(".turn .assistant").last).to_be_in_viewport()
    geometry = await page.evaluate(GEOMETRY)
    viewport, box, field, last = geometry["viewport"], geometry["transcript"], geometry["input"], geometry["last"]
    where = f"(screenshot: {shot}; geometry: {geometry})"
    assert geometry["page"]["scrollHeight"] <= viewport["height"], f"the page itself scrolls {where}"
    assert 0 <= field["top"] and field["bottom"] <= viewport["height"], f"the input is off screen {where}"
    assert 0 <= field["left"] and field["right"] <= viewport["width"], f"the input is off screen {where}"
    assert box["scrollHeight"] > box["clientHeight"], f"the answer should overflow the transcript {where}"
    assert box["top"] < last["bottom"] <= box["bottom"] + 1, f"the end of the answer is not in view {where}"
    assert box["bottom"] <= field["top"], f"the transcript runs under the input {where}"


async def test_a_long_answer_scrolls_in_the_transcript_and_the_input_stays_in_view(
    browser: Browser, held_gateway: Gateway, client: httpx2.AsyncClient, gates: Gates, tmp_path: Path
) -> None:
    page = await _open(browser, held_gateway, LONG)
    await _send(page, "tell me everything")
    # Mid-answer: well past one screen of text, still streaming (the run waits at its gate).
    await page.wait_for_function(
        "() => { const t = document.getElementById('transcript'); return t.scrollHeight > 2 * t.clientHeight; }",
        timeout=30_000,
    )
    await expect(page.locator(".turn").first).to_have_attribute("data-status", "running")
    mid = await screenshot(page, tmp_path, "long-answer-mid")
    await _assert_composer_and_last_message_in_view(page, mid.path)
    # The composer is drawn at the bottom of the picture, the answer's text above it.
    bottom, middle = (int(mid.height * 0.75), mid.height), (80, int(mid.height * 0.6))
    assert mid.has_colour_near(ACCENT, *bottom), f"no Send button at the bottom of {mid.path}"
    assert not mid.has_colour_near(ACCENT, *middle), f"the Send button is not at the bottom: {mid.path}"

    await _release_shown_run(client, page, gates)
    output = await _final_output(client, page)
    done = await screenshot(page, tmp_path, "long-answer-done")
    await _assert_composer_and_last_message_in_view(page, done.path)
    assert output == await _answer(page)
    await _close(page)


async def test_scrolling_up_stops_the_follow_until_the_reader_jumps_back_to_the_latest(
    browser: Browser, gateway: Gateway, worker: Any, tmp_path: Path
) -> None:
    page = await _open(browser, gateway, ENDLESS)  # so it is still streaming when Stop is clicked
    await _send(page, "tell me everything")
    transcript = page.locator("#transcript")
    await page.wait_for_function(
        "() => { const t = document.getElementById('transcript'); return t.scrollHeight > 2 * t.clientHeight; }",
        timeout=30_000,
    )
    await expect(page.locator("#jump")).to_be_hidden()
    await transcript.hover()
    await page.mouse.wheel(0, -100_000)
    await page.wait_for_function("() => document.getElementById('transcript').scrollTop === 0")
    await expect(page.locator("#jump")).to_be_visible()
    length = len(await _answer(page))
    await page.wait_for_function(
        f"() => document.querySelector('.turn .assistant').textContent.length > {length + 300}", timeout=30_000
    )
    shot = await screenshot(page, tmp_path, "scrolled-up")
    assert await transcript.evaluate("t => t.scrollTop") == 0, f"the page pulled the reader down: {shot.path}"
    await expect(page.locator(".turn .user").first).to_be_in_viewport()

    await page.click("#jump")
    await expect(page.locator("#jump")).to_be_hidden()
    length = len(await _answer(page))
    await page.wait_for_function(
        f"() => document.querySelector('.turn .assistant').textContent.length > {length + 300}", timeout=30_000
    )
    shot = await screenshot(page, tmp_path, "followed-again")
    await _assert_composer_and_last_message_in_view(page, shot.path)
    await page.click("#stop")
    await expect(page.locator(".turn").first).to_have_attribute("data-status", "cancelled", timeout=10_000)
    await _close(page)


async def _expect_error_and_text_kept(page: Page, text: str, *fragments: str) -> None:
    error = page.locator("#error")
    await expect(error).to_be_visible()
    for fragment in fragments:
        await expect(error).to_contain_text(fragment)
    await expect(page.locator("#input")).to_have_value(text)
    await expect(page.locator("#send")).to_be_enabled()


async def test_a_failed_send_keeps_the_text_and_says_why(
    browser: Browser, gateway: Gateway, worker: Any, tmp_path: Path
) -> None:
    # 422 from the real gateway: params it does not accept.
    page = await _open(browser, gateway, quote(json.dumps({"tokens": "many"})))
    await _send(page, "first question")
    await _expect_error_and_text_kept(page, "first question", "422", "params.tokens")
    assert "session=" not in page.url
    await screenshot(page, tmp_path, "send-failed-422")

    # 429 and a network failure, served by the browser in place of the gateway.
    await page.goto(f"{gateway.url}/?params={MEDIUM}")

    async def rate_limited(route: Route) -> None:
        body = {"error": {"type": "rate_limited", "message": "too many runs, retry in 7 s"}}
        await route.fulfill(status=429, headers={"Retry-After": "7"}, json=body)

    await page.route("**/v1/sessions", rate_limited)
    await _send(page, "second question")
    await _expect_error_and_text_kept(page, "second question", "429", "too many")
    await page.unroute("**/v1/sessions")
    await page.route("**/v1/sessions", lambda route: route.abort("internetdisconnected"))
    await page.click("#send")
    await _expect_error_and_text_kept(page, "second question", "cannot be reached")
    await page.unroute("**/v1/sessions")

    # Back online, the same text goes out and the error goes away.
    await page.click("#send")
    await expect(page.locator("#input")).to_have_value("")
    await expect(page.locator("#error")).to_be_hidden()
    await expect(page.locator(".turn[data-status=completed]")).to_have_count(1, timeout=30_000)

    # A follow-up that fails (a 503 on the runs endpoint) keeps its text too.
    await page.route(
        "**/runs",
        lambda route: route.fulfill(status=503, json={"error": {"type": "unavailable", "message": "draining"}}),
    )
    await _send(page, "a follow-up")
    await _expect_error_and_text_kept(page, "a follow-up", "503", "draining")
    shot = await screenshot(page, tmp_path, "follow-up-failed")
    await expect(page.locator("#error")).to_be_in_viewport()
    await expect(page.locator(".turn")).to_have_count(1)
    await page.click("#error-close")
    await expect(page.locator("#error")).to_be_hidden()
    assert shot.path.exists()
    await _close(page)


async def test_with_auth_a_refused_key_keeps_the_text_and_the_next_send_asks_again(
    browser: Browser, start_gateway: Callable[..., Any], worker: Any
) -> None:
    gateway = await start_gateway(api_keys=SecretStr(f"acme:{KEY_A}"), secret=SecretStr(SECRET))
    page = await _open(browser, gateway, SHORT)
    answers = iter([None, KEY_A])  # first the dialog is dismissed, then the key is given

    async def key_prompt(dialog: Dialog) -> None:
        key = next(answers)
        await (dialog.dismiss() if key is None else dialog.accept(key))

    page.on("dialog", key_prompt)
    await _send(page, "hello")
    await _expect_error_and_text_kept(page, "hello", "401", "API key")
    await page.click("#send")
    await expect(page.locator(".turn[data-status=completed]")).to_have_count(1, timeout=30_000)
    await expect(page.locator("#error")).to_be_hidden()
    await _close(page)


async def test_new_chat_starts_a_fresh_session_and_leaves_the_old_one_alone(
    browser: Browser, gateway: Gateway, worker: Any, client: httpx2.AsyncClient, tmp_path: Path
) -> None:
    page = await _open(browser, gateway, SHORT)
    await _send(page, "hello")
    await expect(page.locator(".turn[data-status=completed]")).to_have_count(1, timeout=30_000)
    old = _session_of(page)

    await page.click("#new-chat")
    await expect(page.locator(".turn")).to_have_count(0)
    await expect(page.locator("#intro")).to_be_visible()
    await expect(page.locator("#state")).to_have_text("ready")
    await expect(page.locator("#stop")).to_be_disabled()
    await expect(page.locator("#events li")).to_have_count(0)
    assert "session=" not in page.url
    await screenshot(page, tmp_path, "new-chat")

    await _send(page, "good morning")
    await expect(page.locator(".turn[data-status=completed]")).to_have_count(1, timeout=30_000)
    new = _session_of(page)
    assert new != old
    await expect(page.locator(".turn .user")).to_have_text(["good morning"])
    await page.reload()
    await expect(page.locator(".turn[data-status=completed]")).to_have_count(1, timeout=30_000)
    await expect(page.locator(".turn .user")).to_have_text(["good morning"])
    old_runs = (await client.get(f"/v1/sessions/{old}")).json()["runs"]
    assert [run["input"] for run in old_runs] == ["hello"]  # nothing more went to the old session
    await _close(page)


async def test_stop_is_enabled_only_while_a_run_is_active(
    browser: Browser, held_gateway: Gateway, client: httpx2.AsyncClient, gates: Gates
) -> None:
    page = await _open(browser, held_gateway)
    stop = page.locator("#stop")
    await expect(stop).to_be_disabled()
    await _send(page, "hello")
    await expect(stop).to_be_enabled()
    await page.wait_for_function("() => document.querySelector('.turn .assistant')?.textContent.length > 10")
    await page.reload()  # a reload mid-run (it waits at its gate) knows the run is still going
    await expect(stop).to_be_enabled()
    await _release_shown_run(client, page, gates)
    await expect(page.locator(".turn[data-status=completed]")).to_have_count(1, timeout=30_000)
    await expect(stop).to_be_disabled()
    await page.reload()
    await expect(page.locator(".turn[data-status=completed]")).to_have_count(1, timeout=30_000)
    await expect(stop).to_be_disabled()

    await _send(page, "and more")  # it too waits at its gate, for the stop
    await expect(stop).to_be_enabled()
    await page.wait_for_function("() => document.querySelectorAll('.turn .assistant')[1]?.textContent.length > 5")
    await stop.click()
    await expect(page.locator(".turn").nth(1)).to_have_attribute("data-status", "cancelled", timeout=10_000)
    await expect(stop).to_be_disabled()
    await _close(page)


async def test_connection_state_goes_from_ready_to_live_to_done(
    browser: Browser, held_gateway: Gateway, client: httpx2.AsyncClient, gates: Gates
) -> None:
    page = await _open(browser, held_gateway, SHORT)
    state = page.locator("#state")
    await expect(state).to_have_text("ready")
    await _send(page, "hello")
    await expect(state).to_have_text("live")  # the run waits at its gate meanwhile
    await expect(state).to_have_attribute("data-state", "live")
    await _release_shown_run(client, page, gates)
    await expect(page.locator(".turn[data-status=completed]")).to_have_count(1, timeout=30_000)
    await expect(state).to_have_text("done")
    await expect(state).to_have_attribute("data-state", "idle")
    await _close(page)


MARKDOWN = """\
**Bold** and *italic* and `code <b>x</b>`.
<img src=x onerror="window.__pwned = 'img'">
<script>window.__pwned = 'script'</script>

[click me](javascript:window.__pwned='link') and [the docs](https://example.com/docs?a=1&b=2)

- one
- **two**

1. first
2. second

```python
print("<b>hi</b>")
```
"""


def _sse(*events: tuple[str, dict[str, Any]]) -> str:
    return "".join(
        f"id: {i}\nevent: {name}\ndata: {json.dumps(data)}\n\n" for i, (name, data) in enumerate(events, start=1)
    )


async def test_markdown_from_the_model_renders_and_its_html_and_scripts_stay_inert(
    browser: Browser, gateway: Gateway, tmp_path: Path
) -> None:
    """The gateway is played by the browser: a session whose stream carries markdown with HTML,
    an onerror handler and a javascript: link in it."""
    page = await _open(browser, gateway)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))

    async def create(route: Route, request: Request) -> None:
        await route.fulfill(
            status=201,
            json={
                "session_id": "s_md",
                "run_id": "r_1",
                "events_url": "/v1/sessions/s_md/events",
                "stream_token": None,
            },
        )

    stream = _sse(
        ("run.queued", {"run_id": "r_1", "input": "show me markdown"}),
        ("run.started", {"run_id": "r_1", "attempt": 1}),
        ("message.delta", {"run_id": "r_1", "text": MARKDOWN[:70]}),
        ("message.delta", {"run_id": "r_1", "text": MARKDOWN[70:]}),
        ("run.completed", {"run_id": "r_1", "output": MARKDOWN, "usage": {}}),
    )
    await page.route("**/v1/sessions", create)
    await page.route(
        re.compile(r"/v1/sessions/s_md/events\?"),
        lambda route: route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=stream),
    )
    await _send(page, "show me markdown")
    answer = page.locator(".turn .assistant")
    await expect(page.locator(".turn")).to_have_attribute("data-status", "completed")
    await expect(answer.locator("strong").first).to_have_text("Bold")
    await expect(answer.locator("em")).to_have_text("italic")
    await expect(answer.locator("p code")).to_have_text("code <b>x</b>")
    await expect(answer.locator("ul > li")).to_have_text(["one", "two"])
    await expect(answer.locator("ul strong")).to_have_text("two")
    await expect(answer.locator("ol > li")).to_have_text(["first", "second"])
    await expect(answer.locator("pre code")).to_have_text('print("<b>hi</b>")')
    # The HTML shows as text, nothing of it became an element, nothing ran, nothing was fetched.
    await expect(answer).to_contain_text("<img src=x onerror=\"window.__pwned = 'img'\">")
    await expect(answer).to_contain_text("<script>window.__pwned = 'script'</script>")
    await expect(answer).to_contain_text("[click me](javascript:window.__pwned='link')")
    assert await answer.locator("img, script, b, [onerror]").count() == 0
    links = answer.locator("a")
    await expect(links).to_have_count(1)
    await expect(links).to_have_attribute("href", "https://example.com/docs?a=1&b=2")
    await expect(links).to_have_attribute("rel", "noopener noreferrer")
    await expect(links).to_have_text("the docs")
    await page.locator("#events li").first.wait_for(state="attached")
    assert await page.evaluate("() => window.__pwned") is None
    assert dialogs == []
    assert not [url for url in requests if url.endswith("/x") or "example.com" in url]
    await screenshot(page, tmp_path, "markdown")
    await _close(page)


async def test_the_markdown_renderer_keeps_every_unsafe_link_and_tag_inert(browser: Browser, gateway: Gateway) -> None:
    page = await _open(browser, gateway)
    rendered = await page.evaluate(
        """async () => {
          const { renderMarkdown } = await import("/static/markdown.js");
          const cases = {
            js: "[x](javascript:alert(1))",
            mixed: "[x](JaVaScRiPt:alert(1))",
            data: "[x](data:text/html,<script>alert(1)</script>)",
            vbs: "[x](vbscript:msgbox(1))",
            bare: "see javascript:alert(1) and https://example.com/a.",
            html: '<a href="javascript:alert(1)">x</a> <iframe src="//evil.example"></iframe>',
            entity: "&lt;img src=x onerror=alert(1)&gt; &amp;",
            nested: "[**https://example.com**](https://example.com/x)",
            open: "**not closed yet and `no code",
            fence: "```\\n<img src=x onerror=alert(1)>\\nstill streaming",
          };
          const out = {};
          for (const [name, text] of Object.entries(cases)) {
            const box = document.createElement("div");
            box.append(renderMarkdown(text));
            out[name] = {
              text: box.textContent,
              html: box.innerHTML,  // read back to check, never written
              tags: [...box.querySelectorAll("*")].map((e) => e.tagName.toLowerCase()),
              hrefs: [...box.querySelectorAll("a")].map((a) => a.getAttribute("href")),
            };
          }
          return out;
        }"""
    )
    for name in ("js", "mixed", "data", "vbs"):
        assert rendered[name]["hrefs"] == [], rendered[name]
        assert rendered[name]["tags"] == ["p"], rendered[name]
    assert rendered["data"]["text"] == "[x](data:text/html,<script>alert(1)</script>)"
    assert rendered["bare"]["hrefs"] == ["https://example.com/a"]
    assert rendered["html"]["tags"] == ["p"] and rendered["html"]["text"].startswith('<a href="javascript:')
    assert rendered["entity"]["text"] == "&lt;img src=x onerror=alert(1)&gt; &amp;"  # shown as typed
    assert rendered["nested"]["hrefs"] == ["https://example.com/x"]  # no link inside the link
    assert rendered["nested"]["tags"] == ["p", "a", "strong"]
    assert rendered["open"]["tags"] == ["p"]  # still streaming: stays as typed until it closes
    assert rendered["open"]["text"] == "**not closed yet and `no code"
    assert rendered["fence"]["tags"] == ["pre", "code"]
    assert rendered["fence"]["text"] == "<img src=x onerror=alert(1)>\nstill streaming"
    await _close(page)


async def test_the_inspector_shows_event_ids_and_where_a_reload_resumed(
    browser: Browser, held_gateway: Gateway, client: httpx2.AsyncClient, gates: Gates, tmp_path: Path
) -> None:
    page = await _open(browser, held_gateway)  # its run waits at its gate: the reload comes mid-answer
    await _send(page, "hello")
    await page.wait_for_function("() => document.querySelector('.turn .assistant')?.textContent.length > 40")
    await page.click("#inspector summary")
    events = page.locator("#events")
    await expect(events.locator("li[data-type='run.queued']")).to_have_count(1)
    await expect(events.locator("li[data-type='message.delta']").first).to_contain_text("#")
    shown = await page.evaluate(f"() => Number(sessionStorage.getItem('tokentail:last:{_session_of(page)}'))")
    assert shown > 0

    await page.reload()
    await _release_shown_run(client, page, gates)  # its new events come after the reload's resume
    resumed = events.locator("li[data-kind~=resume]")
    await expect(resumed).to_have_count(1, timeout=30_000)
    stored_before_reload = int(await resumed.get_attribute("data-from") or 0)
    assert stored_before_reload >= shown
    await expect(resumed).to_have_text(f"↻resumed from id {stored_before_reload}: new events from here on")
    # Before the resume point the events were replayed to rebuild the transcript; after it, new.
    await expect(events.locator("li.replayed").last).to_have_attribute("data-id", str(stored_before_reload))
    await expect(events.locator("li[data-kind~=resume] + li")).to_have_attribute(
        "data-id", str(stored_before_reload + 1)
    )
    output = await _final_output(client, page)
    assert output == await _answer(page)
    await expect(page.locator("#inspector")).to_have_attribute("open", "")  # kept open across the reload
    await expect(page.locator("#inspector-summary")).to_contain_text("0 gaps")
    await screenshot(page, tmp_path, "inspector-after-reload")
    await _close(page)


async def test_a_dropped_gateway_connection_shows_reconnecting_then_resumes_from_the_last_id(
    browser: Browser, held_gateway: Gateway, client: httpx2.AsyncClient, gates: Gates, tmp_path: Path
) -> None:
    gateway = held_gateway
    page = await _open(browser, gateway)  # its run waits at its gate: the gateway stops mid-answer
    await page.click("#inspector summary")
    await _send(page, "hello")
    await page.wait_for_function("() => document.querySelector('.turn .assistant')?.textContent.length > 40")
    await gateway.stop()  # ends its streams: the page loses its connection mid-answer
    state = page.locator("#state")
    await expect(state).to_have_text("reconnecting", timeout=15_000)
    await expect(page.locator("#events li[data-kind~=trouble]")).to_contain_text("connection lost after id")
    await screenshot(page, tmp_path, "reconnecting")
    replacement = await Gateway(gateway.settings, port=gateway.port).start()  # another gateway, same address
    try:
        resumed = page.locator("#events li[data-kind~=resume]")
        await expect(resumed).to_have_count(1, timeout=30_000)
        last_id = int(await resumed.get_attribute("data-from") or 0)
        assert last_id > 0
        await expect(resumed).to_have_text(f"↻reconnected: resumed from id {last_id}")
        await _release_shown_run(client, page, gates)
        await expect(page.locator("#events li[data-kind~=resume] + li")).to_have_attribute("data-id", str(last_id + 1))
        await expect(page.locator("#inspector-summary")).to_contain_text("1 reconnects")
        async with httpx2.AsyncClient(base_url=replacement.url) as other:
            assert await _final_output(other, page) == await _answer(page)
        await screenshot(page, tmp_path, "resumed")
    finally:
        await replacement.stop()
    await _close(page)
