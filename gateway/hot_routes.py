"""The requests every stream starts with, answered without FastAPI's request path.

`POST /v1/sessions`, `POST /v1/sessions/{id}/runs` and `GET /v1/sessions/{id}/events` are what a
chat client sends for every answer it shows. Through FastAPI each costs more CPU than the work it
asks for: dependency solving (a dozen `Depends`), parameter and body validation field by field,
the response model's serialisation, the route's own exit stacks. Here each is a plain handler that
reads what its FastAPI route declares, by hand, calls the route's one dependency (a plain function
of the request, gateway/deps.py: who calls, and the session it may use) and then the route's own
function: one implementation of what the request does, documented by the FastAPI route (the
OpenAPI schema is its), and answered here.

A hot route sits first among the app's routes, so it is reached through every middleware and the
app's exception handlers, as the FastAPI route is: a middleware added later wraps both. The gateway
reaches them shorter still (`HotStack`, entered by `GatewayApp.__call__` with traces off): the app's
own middleware (its 500 answer, every middleware added, its exception handlers) around the hot
routes alone, without the layers of FastAPI's and Starlette's request path that do nothing for them
(a router trying every route, FastAPI's telemetry of exceptions, its own body limit, which is unset,
its exit stack for uploaded files). It only takes requests it reads entirely: anything it does not
(a body that is not valid JSON for the model, a bad header or query value, another content type, a
body its client cut short) is `Declined` before anything was done, and goes on to the FastAPI route
with its body, which answers it with FastAPI's own errors. So the two cannot disagree on an error, and
tests/integration/test_hot_routes.py checks that they agree on every answer, and pins what the
FastAPI routes declare (their one dependency by identity) so that a new parameter or dependency
there fails until the handler here reads it too.
"""

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Response
from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ValidationError
from starlette.datastructures import URLPath
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokentail.gateway import deps
from tokentail.gateway.routes import events, sessions
from tokentail.gateway.schemas import CreateRun, CreateSession

# Set in a request's scope once its hot route declined it, so that the router passes it on.
DECLINED = "tokentail.hot_route_declined"
_IDEMPOTENCY_KEY = re.compile(deps.IDEMPOTENCY_KEY_PATTERN)
_CATCH_UP = ("events", "snapshot")
Model = TypeVar("Model", bound=BaseModel)


class Declined(Exception):
    """The request is not one the handler reads entirely: the FastAPI route answers it."""


Handler = Callable[[Request, bytes], Awaitable[Response]]


class HotRoute(BaseRoute):
    """`documented` (a FastAPI route: its path, its methods, its OpenAPI entry), answered by `handler`."""

    def __init__(self, documented: APIRoute, handler: Handler, reads_body: bool) -> None:
        self.documented = documented
        self.path_format = documented.path_format  # as the router reports the route it chose
        self.name = documented.name
        self.handler = handler
        self.reads_body = reads_body

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        return self.documented.url_path_for(name, **path_params)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if DECLINED in scope:
            return Match.NONE, {}
        match, child_scope = self.documented.matches(scope)
        return (Match.FULL, child_scope) if match is Match.FULL else (Match.NONE, {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            body = await request.body() if self.reads_body else b""
        except ClientDisconnect:
            # The client left before its body ended: a body not read entirely, declined as any other.
            # The server answers every later `receive` with the disconnect too (ASGI), so FastAPI's
            # route finds the client gone as this did, and ends it quietly (400, sent to nobody).
            await self._decline(scope, receive, send)
            return
        try:
            response = await self.handler(request, body)
        except Declined:
            await self._decline(scope, _replaying(body, receive) if self.reads_body else receive, send)
            return
        await response(scope, receive, send)

    async def _decline(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on to the router, which skips this route and answers it by FastAPI's."""
        scope[DECLINED] = True
        await scope["router"](scope, receive, send)


class HotStack:
    """The app's own middleware around its hot routes alone: what a hot request goes through, as it
    would through the app's whole stack, less the layers that do nothing for it. Made at its first
    request, as Starlette makes the app's stack (a middleware added until then is in it); a request a
    hot route declines goes on to the app's router, with FastAPI's exit stack, as in the whole stack."""

    def __init__(self, app: FastAPI, routes: list[HotRoute]) -> None:
        self._app = app
        self._routes = routes
        self._stack: ASGIApp | None = None
        self._router: ASGIApp = AsyncExitStackMiddleware(app.router)  # where a declined request goes

    def route(self, scope: Scope) -> HotRoute | None:
        """The hot route that takes this request, if one does (its path parameters put in the scope)."""
        for route in self._routes:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope.update(child_scope)
                scope["route"] = route
                return route
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._stack is None:
            self._stack = self._build()
        scope["app"] = self._app
        scope["router"] = self._router
        await self._stack(scope, receive, send)

    def _build(self) -> ASGIApp:
        app = self._app
        handlers = {key: value for key, value in app.exception_handlers.items() if key not in (500, Exception)}
        error_handler = app.exception_handlers.get(500) or app.exception_handlers.get(Exception)
        stack: ASGIApp = ExceptionMiddleware(_handle, handlers=handlers, debug=app.debug)
        for middleware in reversed(app.user_middleware):
            stack = middleware.cls(stack, *middleware.args, **middleware.kwargs)
        return ServerErrorMiddleware(stack, handler=error_handler, debug=app.debug)


async def _handle(scope: Scope, receive: Receive, send: Send) -> None:
    """The route `HotStack.route` found, as the router would call it."""
    route = scope["route"]
    await route.handle(scope, receive, send)


def install(app: FastAPI) -> HotStack | None:
    """Put the hot routes first among `app`'s routes (after every FastAPI route is included); their
    own stack, which the app enters first."""
    if not app.state.settings.hot_routes:
        return None  # TOKENTAIL_HOT_ROUTES=false: FastAPI's routes answer them
    if app.router.dependencies:
        # Dependencies of the whole app would run for FastAPI's routes only: refuse, rather than
        # skip them silently on the requests that matter most.
        raise RuntimeError("the gateway's hot routes cannot run app-wide dependencies: declare them on routes")
    by_name = {
        route.name: route for route in (*sessions.router.routes, *events.router.routes) if isinstance(route, APIRoute)
    }
    hot = [
        HotRoute(by_name["create_session"], _create_session, reads_body=True),
        HotRoute(by_name["create_run"], _create_run, reads_body=True),
        HotRoute(by_name["stream_events"], _stream_events, reads_body=False),
    ]
    app.router.routes[0:0] = hot
    return HotStack(app, hot)


async def _create_session(request: Request, body: bytes) -> Response:
    created = _json_body(request, body, CreateSession)
    idempotency_key = _idempotency_key(request)
    caller = await deps.api_key_caller(request, *await _credentials(request))  # the FastAPI route's one dependency
    answer = _sub_response()
    result = await sessions.create_session(created, request, answer, caller, idempotency_key)
    return _json(result, 201, answer)


async def _create_run(request: Request, body: bytes) -> Response:
    run = _json_body(request, body, CreateRun)
    idempotency_key = _idempotency_key(request)
    access = await deps.chat_session(request, request.path_params["session_id"], *await _credentials(request))
    return _json(await sessions.create_run(run, request, access, idempotency_key), 202)


async def _stream_events(request: Request, body: bytes) -> Response:
    query, headers = request.query_params, request.headers
    catch_up = query.get("catch_up", "events")
    if catch_up not in _CATCH_UP or "run" in query or "subtree" in query:
        raise Declined  # one run followed (`?run=`): FastAPI's route reads it
    access = await deps.readable_session(request, request.path_params["session_id"], *await _credentials(request))
    return await events.stream_events(
        request,
        access,
        query.get("last_event_id"),
        headers.get("last-event-id"),
        headers.get("accept"),
        catch_up,  # type: ignore[arg-type]  # one of _CATCH_UP
    )


async def _credentials(request: Request) -> tuple[HTTPAuthorizationCredentials | None, str | None]:
    """The two credentials the routes' one dependency takes, read by the schemes that FastAPI calls."""
    return await deps.bearer_credentials(request), await deps.query_token(request)


def _json_body(request: Request, body: bytes, model: type[Model]) -> Model:
    """The body as `model`, if it is JSON FastAPI would read the same way (else Declined)."""
    content_type = request.headers.get("content-type", "")
    if not body or content_type.partition(";")[0].strip().lower() != "application/json":
        raise Declined
    try:
        return model.model_validate(json.loads(body))
    except (ValueError, ValidationError):  # json.JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise Declined from None


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and _IDEMPOTENCY_KEY.match(key) is None:
        raise Declined
    return key


def _sub_response() -> Response:
    """What FastAPI gives a route's `response: Response` parameter: no status until the route sets one."""
    response = Response()
    del response.headers["content-length"]
    response.status_code = None  # type: ignore[assignment]
    return response


def _json(result: BaseModel, status: int, sub_response: Response | None = None) -> Response:
    """`result` as FastAPI answers a route's return value, with what the route set on its sub-response."""
    if sub_response is not None and sub_response.status_code:
        status = sub_response.status_code
    response = Response(result.__pydantic_serializer__.to_json(result), status, media_type="application/json")
    if sub_response is not None:
        response.headers.raw.extend(sub_response.headers.raw)
    return response


def _replaying(body: bytes, receive: Receive) -> Receive:
    """`receive`, with the body the hot route read given again first."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay
