"""npm `openai` in Chromium, on a page of another origin (as a frontend's dev server serves it),
against `tokentail dev` as it starts: the SDK's own headers (X-Stainless-*) pass CORS's preflight."""

import functools
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode

import pytest
from playwright.async_api import Browser, expect

from tests.browser.test_use_chat_page import ESBUILD, NODE_TESTS, Dev
from tokentail.redis_server import free_port
from tokentail.worker.providers.scripted import DEFAULT_TOKENS, scripted_tokens

pytestmark = pytest.mark.responses


ANSWER = "".join(scripted_tokens("hello", DEFAULT_TOKENS))


@pytest.fixture(scope="module")
def openai_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not ESBUILD.exists():
        pytest.fail(f"{ESBUILD} is missing: run ./scripts/install test (it runs npm ci in tests/node)")
    site = tmp_path_factory.mktemp("openai-site")
    subprocess.run(
        [ESBUILD, "openai_page.mjs", "--bundle", "--format=esm", "--target=es2022", "--platform=browser",
         f"--outfile={site / 'page.js'}", "--log-level=warning"],
        cwd=NODE_TESTS, check=True,
    )  # fmt: skip
    (site / "index.html").write_text(
        '<p id="status">running</p><p id="text"></p><script type="module" src="page.js"></script>'
    )
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://localhost:{server.server_address[1]}"  # localhost: another origin than 127.0.0.1:<gateway>
    server.shutdown()
    server.server_close()


async def test_the_openai_sdk_streams_a_response_from_a_page_on_another_origin(
    browser: Browser, openai_site: str
) -> None:
    dev = Dev()
    try:
        page = await browser.new_page()
        await page.goto(f"{openai_site}/?" + urlencode({"gateway": dev.url, "key": "unused", "input": "hello"}))
        await expect(page.locator("#status")).to_have_text("done completed true", timeout=30_000)
        await expect(page.locator("#text")).to_have_text(ANSWER)
    finally:
        dev.stop()
