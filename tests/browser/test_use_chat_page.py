"""The docs' useChat snippet on a page of its own origin, as a Vite or Next dev server serves it, against
`tokentail dev` as it starts: the real React hook (@ai-sdk/react) in Chromium, across origins (CORS)."""

import functools
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.e2e.conftest import wait_until_ready
from tokentail.redis_server import free_port
from tokentail.worker.providers.scripted import DEFAULT_TOKENS, scripted_tokens

pytestmark = pytest.mark.ai_sdk


NODE_TESTS = Path(__file__).resolve().parents[1] / "node"
ESBUILD = NODE_TESTS / "node_modules" / "@esbuild" / "linux-x64" / "bin" / "esbuild"
ANSWER = "".join(scripted_tokens("hello", DEFAULT_TOKENS))  # the offline model's answer, at its default length


@pytest.fixture(scope="module")
def page_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The page, bundled as a frontend's build would, served from an origin that is not the gateway's."""
    if not ESBUILD.exists():
        pytest.fail(f"{ESBUILD} is missing: run ./scripts/install test (it runs npm ci in tests/node)")
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [ESBUILD, "use_chat_page.tsx", "--bundle", "--format=esm", "--target=es2022", "--jsx=automatic",
         f"--outfile={site / 'page.js'}", "--log-level=warning"],
        cwd=NODE_TESTS, check=True,
    )  # fmt: skip
    (site / "index.html").write_text('<div id="root"></div><script type="module" src="page.js"></script>')
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://localhost:{server.server_address[1]}"  # localhost: another origin than 127.0.0.1:<gateway>
    server.shutdown()
    server.server_close()


class Dev:
    """`tokentail dev`, started as the README starts it (none of the test run's settings), and what it printed."""

    def __init__(self, **env: str) -> None:
        self.port = free_port()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TOKENTAIL_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tokentail.cli", "dev", "--port", str(self.port)],
            env={**clean, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until_ready(f"{self.url}/readyz", self.process, timeout=60)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.communicate(timeout=30)[0].decode()


async def test_the_docs_use_chat_snippet_streams_from_a_page_on_another_origin_and_survives_a_reload(
    browser: Browser, page_site: str
) -> None:
    dev = Dev()
    try:
        page = await browser.new_page()
        chat = f"{page_site}/?gateway={dev.url}&chat=chat-{uuid.uuid4().hex}"
        await page.goto(chat)
        await page.fill("#input", "hello")
        await page.click("#send")
        await expect(page.locator("p.assistant")).to_have_text(ANSWER, timeout=30_000)
        await expect(page.locator("#status")).to_have_text("ready")
        await page.reload()  # the earlier messages come back from the gateway
        await expect(page.locator("p.user")).to_have_text("hello")
        await expect(page.locator("p.assistant")).to_have_text(ANSWER)
    finally:
        output = dev.stop()
    assert "cors      http://localhost:*, http://127.0.0.1:*" in output, output


async def test_a_page_on_an_origin_not_allowed_fails_and_the_gateway_says_which_setting_allows_it(
    browser: Browser, page_site: str
) -> None:
    dev = Dev(TOKENTAIL_CORS_ORIGINS="https://app.example.com")
    try:
        page = await browser.new_page()
        await page.goto(f"{page_site}/?gateway={dev.url}&chat=chat-{uuid.uuid4().hex}")
        await page.fill("#input", "hello")
        await page.click("#send")
        await expect(page.locator("#status")).to_contain_text("error", timeout=30_000)
    finally:
        output = dev.stop()
    assert f"refused the preflight of a page on {page_site}" in output and "TOKENTAIL_CORS_ORIGINS" in output, output
