"""The gateway's two pages, the demo chat (`/`) and the operator console (`/console`), and everything they
load from gateway/static/ (its rooms demo/ and console/, and the browser clients at its top): each script,
stylesheet and module a page names, and each module those import, is served where the page asks for it.
Paths only: that the modules parse and their imports' names link up is scripts/check's (node --check,
tests/node/static_imports.mjs); that a page works, the browser tests' (tests/browser)."""

import re
from pathlib import Path
from urllib.parse import urljoin

import httpx

from tokentail.gateway.app import create_app
from tokentail.shared.plumbing.settings import Settings

PAGES = ("/", "/console", "/console/sessions/s_x/runs/r_y")
# What a page or a module names: an attribute's URL (`src`, `href`), and a module's import
# specifier (static `from "..."`, dynamic `import("...")`, in a page's inline script as in a module).
NAMED = re.compile(r'\b(?:src|href)="([^"]+)"|\bfrom\s*"([^"]+)"|\bimport\s*\(\s*"([^"]+)"\s*\)')
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


def assets_named(url: str, text: str) -> set[str]:
    """The gateway's static files `text` (served at `url`) names; bare specifiers (an npm package, which
    the app bundles) and other places (`data:`, other pages) are not the gateway's files."""
    named = {next(filter(None, match.groups())) for match in NAMED.finditer(text)}
    urls = {urljoin(url, name) for name in named if name.startswith(("/", "./", "../"))}
    return {url for url in urls if url.startswith("/static/")}


async def test_every_asset_a_page_loads_is_served() -> None:
    app = create_app(Settings(redis_url="redis://127.0.0.1:1"))  # no lifespan: nothing here reads Redis
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        seen: set[str] = set()
        due = set(PAGES)
        while due:
            url = due.pop()
            seen.add(url)
            response = await client.get(url)
            assert response.status_code == 200, url
            suffix = "." + url.rsplit(".", 1)[-1] if url.startswith("/static/") else ".html"
            assert response.headers["content-type"].startswith(TYPES[suffix]), url
            due |= assets_named(url, response.text) - seen
    # Both rooms and the clients they share were reached (a page that names nothing would pass above).
    assert {"/static/demo/demo.js", "/static/console/console.js", "/static/tokentail.js", "/static/markdown.js"} <= seen


def test_each_page_lives_in_its_room() -> None:
    """gateway/static/'s top holds the browser modules any page imports (their URLs are in the docs); a
    page, its script and its style live in the page's room (demo/, console/), never at the top."""
    static = Path(__file__).resolve().parents[3] / "gateway/static"
    assert sorted(path.name for path in static.iterdir() if path.is_dir()) == ["console", "demo"]
    assert {path.suffix for path in static.iterdir() if path.is_file()} == {".js"}
