"""Which pages on other origins may call the API (`TOKENTAIL_CORS_ORIGINS`), and saying so when one
may not.

Starlette's CORSMiddleware answers. This adds origins with any port (`http://localhost:*`: what
`tokentail dev` allows by default, for a Vite or Next dev server on a port of its own), and a log
line whenever a browser's cross-origin call is refused, naming the origin and the setting that
would allow it: the browser shows its developer only a CORS error, and a refused preflight was a
bare 405 before this middleware answered every one.
"""

import logging
import re
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tokentail.shared.plumbing.logs import RateLimitedLogger

ANY_PORT = ":*"
METHODS = ["GET", "POST", "DELETE"]
# The OpenAI SDKs (the Responses API, gateway/protocols/responses/routes.py) send their own headers on every
# request; a browser asks leave for each in the preflight, and one refused fails the whole call.
OPENAI_SDK_HEADERS = [
    *(
        f"X-Stainless-{name}"
        for name in ("Lang", "Package-Version", "OS", "Arch", "Runtime", "Runtime-Version", "Retry-Count", "Timeout")
    ),
    *(f"X-Stainless-{name}" for name in ("Helper-Method", "Poll-Helper", "Custom-Poll-Interval")),
    "OpenAI-Organization",
    "OpenAI-Project",
    "OpenAI-Beta",
    "Idempotency-Key",
]
# The LangGraph SDKs send their key (useStream's `apiKey`) as `x-api-key` (gateway/protocols/langgraph/access.py).
HEADERS = ["Authorization", "Content-Type", "Last-Event-ID", "X-Api-Key", *OPENAI_SDK_HEADERS]
# What a page may read of an answer beyond the safelisted headers. The LangGraph SDKs read a run's stream's
# `Content-Location` (useStream keeps the run's id for `reconnectOnMount`, and `stop()` cancels that run)
# and `Location` (where the SDK reconnects after a cut): hidden, a page on another origin has neither.
EXPOSED = ["Retry-After", "Location", "Content-Location"]
_refused = RateLimitedLogger(logging.getLogger(__name__), every_seconds=10)
_HOW = "to allow it, add it to TOKENTAIL_CORS_ORIGINS (`http://localhost:*` allows any port)"
_WHAT_THE_API_TAKES = f"the API takes {', '.join(METHODS)}, with the headers {', '.join(HEADERS)}"


class Cors(CORSMiddleware):
    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        any_port = [
            re.escape(origin.removesuffix(ANY_PORT)) + r":\d{1,5}" for origin in origins if origin.endswith(ANY_PORT)
        ]
        super().__init__(
            app,
            allow_origins=[origin for origin in origins if not origin.endswith(ANY_PORT)],
            allow_origin_regex="|".join(any_port) or None,
            allow_methods=METHODS,
            allow_headers=HEADERS,
            expose_headers=EXPOSED,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
            cross = origin is not None and urlsplit(origin).netloc != headers.get("host")
            if cross and not preflight and not self.is_allowed_origin(origin):  # type: ignore[arg-type]
                _refused.warning("a page on %s called %s %s, and its browser may not read the answer: %s",
                                 origin, scope["method"], scope["path"], _HOW)  # fmt: skip
        await super().__call__(scope, receive, send)

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 200:
            origin = request_headers.get("origin", "")
            how = _HOW if not self.is_allowed_origin(origin) else _WHAT_THE_API_TAKES
            _refused.warning(
                "refused the preflight of a page on %s (%s): %s", origin, bytes(response.body).decode(), how
            )
        return response
