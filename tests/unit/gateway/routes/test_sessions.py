"""gateway/routes/sessions.py: the events URL its answers name, built without the router's search."""

import pytest
from starlette.requests import Request

from tokentail.gateway.app import create_app
from tokentail.gateway.routes.sessions import _events_url
from tokentail.shared.plumbing.settings import Settings


@pytest.mark.parametrize("root_path", ["", "/tokentail"])
@pytest.mark.parametrize("host", ["gateway.example:8443", "127.0.0.1:8000"])
def test_the_events_url_is_the_one_the_router_would_build(root_path: str, host: str) -> None:
    app = create_app(Settings(redis_url="redis://127.0.0.1:1"))
    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "https",
        "server": ("127.0.0.1", 8000),
        "path": f"{root_path}/v1/sessions",
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", host.encode())],
        "app": app,
        "router": app.router,
    }
    request = Request(scope)
    assert _events_url(request, "s_abc") == str(request.url_for("stream_events", session_id="s_abc"))
