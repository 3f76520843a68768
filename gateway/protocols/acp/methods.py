"""What each ACP message a client sends does (docs/acp.md), over tokentail's sessions and runs, for one
connection (shared/features/acp_connections.py). The transports (routes.py) hand each message here; what it
answers goes in the connection's outbox (its stream, on whichever gateway holds it), or, for a prompt,
comes with the run's end on the session's stream (render.py).

    initialize            the connection (routes.py: its answer is the POST's own)
    session/new           a session (the ACP `sessionId` is its id), of the connection's agent or the one
                          `_meta.agent` names; `cwd`, `mcpServers` and `_meta.multitask` kept in its
                          metadata (`acp`)
    session/load          the session's history replayed as updates, then the answer (in one outbox entry:
                          in order), and its stream from there on (the turn still going, as it goes)
    session/resume        its stream from now on, nothing replayed
    session/prompt        a run with the prompt's content as its input; while one is going, in line
                          behind it, a steer of it, or refused: the session's `multitask`
    session/cancel        the session's active run cancelled (and its children)
    a permission's answer the question answered (`QUESTION_PREFIX` ids), from any gateway
"""

import contextlib
import time
from typing import Any

from tokentail.gateway.access.auth import Caller
from tokentail.gateway.access.ids import new_run_id, new_session_id
from tokentail.gateway.commands.questions import answer_question
from tokentail.gateway.commands.turns import RunCommands, check_agent_name, queue_follow_up
from tokentail.gateway.errors import describe
from tokentail.gateway.live.chunk import Chunk
from tokentail.gateway.protocols.acp.render import (
    ALLOW,
    QUESTION_PREFIX,
    AcpUpdates,
    Message,
    answers_in,
    client_methods,
)
from tokentail.gateway.reading.feed import Batch
from tokentail.gateway.schemas import CreateRun
from tokentail.shared.features.acp_connections import AcpConnection, AcpConnections
from tokentail.shared.vocabulary.errors import (
    InputNotPending,
    InputTooLarge,
    InvalidInput,
    QuestionNotFound,
    SessionExpired,
    SessionNotFound,
    TokentailError,
)
from tokentail.shared.vocabulary.records import Question, SessionRecord

PROTOCOL_VERSION = 1
MULTITASKS = ("steer", "enqueue", "reject")  # what a prompt does while a turn is going (a session's choice)
MAX_SESSIONS = 64  # sessions one connection shows at once (each a stream)
REPLAY_READ = 1000  # events a load reads at once
# What leaves a client's answer untaken, nothing to tell it: answered elsewhere, gone, or not an answer.
_NOT_TAKEN = (InputNotPending, QuestionNotFound, SessionNotFound, SessionExpired, InvalidInput, InputTooLarge)

# JSON-RPC's codes, and ACP's for what is not found.
INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL = -32600, -32601, -32602, -32603
NOT_FOUND = -32002


class AcpError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def capabilities() -> dict[str, Any]:
    """What tokentail's agents offer an ACP client (`initialize`'s `agentCapabilities`)."""
    return {
        "loadSession": True,
        "promptCapabilities": {"image": False, "audio": False, "embeddedContext": True},
        "mcpCapabilities": {"http": False, "sse": False},
        "sessionCapabilities": {"resume": {}},
    }


def response(request_id: Any, result: Any) -> Message:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def error_of(request_id: Any, exc: Exception) -> Message:
    """A refusal as JSON-RPC says it: ACP's code for what is not found, invalid params for bad input,
    else internal, with tokentail's error type (and status) in `data`."""
    if isinstance(exc, AcpError):
        return {
            "jsonrpc": "2.0",
            "id": request_id,
            "error": {"code": exc.code, "message": exc.message, "data": exc.data},
        }
    assert isinstance(exc, TokentailError)
    status, type_ = describe(exc)
    code = NOT_FOUND if status in (404, 410) else INVALID_PARAMS if status in (400, 413, 422) else INTERNAL
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {"code": code, "message": str(exc), "data": {"type": type_, "status": status}},
    }


def prompt_text(blocks: Any) -> str:
    """A prompt's content blocks as a run's input: text as it is, a resource's text under its uri, a link
    to one as its name and uri. Images and audio are not taken (`promptCapabilities` says so)."""
    if not isinstance(blocks, list) or not blocks:
        raise AcpError(INVALID_PARAMS, "prompt: a list of content blocks, at least one")
    parts = []
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append(str(block.get("text", "")))
        elif kind == "resource_link":
            parts.append(f"[{block.get('name', '')}]({block.get('uri', '')})")
        elif kind == "resource" and isinstance(resource := block.get("resource"), dict) and "text" in resource:
            parts.append(f"{resource.get('uri', '')}:\n{resource['text']}")
        else:
            raise AcpError(
                INVALID_PARAMS, f"prompt: a {kind!r} block is not taken (text, resource_link, resource with text)"
            )
    return "\n\n".join(parts)


class AcpMethods:
    def __init__(self, commands: RunCommands, connections: AcpConnections, connection: AcpConnection) -> None:
        self.commands = commands
        self.connections = connections
        self.connection = connection

    @property
    def caller(self) -> Caller:
        return self.commands.caller

    async def handle(self, message: dict[str, Any]) -> None:
        """Do what `message` asks; its answer, if it has one now, goes in the connection's outbox."""
        method, request_id = message.get("method"), message.get("id")
        if method is None:  # the client's answer to the agent's request
            await self._answered(message)
            return
        try:
            params = message.get("params") or {}
            if not isinstance(params, dict):
                raise AcpError(INVALID_PARAMS, "params: an object")
            answer = await self._call(str(method), params, request_id)
        except (AcpError, TokentailError) as exc:
            answer = error_of(request_id, exc)
        if answer is not None and request_id is not None:
            await self.connections.send(self.connection.connection_id, answer if isinstance(answer, list) else [answer])

    async def _call(self, method: str, params: dict[str, Any], request_id: Any) -> Message | list[Message] | None:
        # Who may: a session is made with an API key; a run asked, cancelled or answered with an API key
        # or a chat token (its session's); a read token loads and reads (every route's rule).
        if method == "session/new":
            self.caller.require_api_key()
        elif method in ("session/prompt", "session/cancel"):
            self.caller.require_chat()
        match method:
            case "session/new":
                return response(request_id, {"sessionId": await self._new(params)})
            case "session/load":
                return await self._load(params, request_id)
            case "session/resume":
                session = await self._session(params)
                await self._open(session.session_id, session.last_event_id)
                return response(request_id, {"sessionId": session.session_id})
            case "session/prompt":
                await self._prompt(params, request_id)
                return None  # answered at the run's end, on the session's stream
            case "session/cancel":
                session = await self._session(params)
                await self.commands.runs.cancel_run(session.session_id)
                return None
            case "authenticate":
                return response(request_id, {})
            case "initialize":
                raise AcpError(INVALID_REQUEST, "initialize: the connection is initialized already")
            case _:
                raise AcpError(METHOD_NOT_FOUND, f"{method}: not served by tokentail (docs/acp.md)", {"method": method})

    async def _new(self, params: dict[str, Any]) -> str:
        given = params.get("_meta")
        meta: dict[str, Any] = given if isinstance(given, dict) else {}
        agent = meta.get("agent")
        agent = agent if isinstance(agent, str) else self.connection.agent
        check_agent_name(agent, self.commands.settings)
        multitask = meta.get("multitask")
        if multitask is not None and multitask not in MULTITASKS:
            raise AcpError(INVALID_PARAMS, f"_meta.multitask: one of {', '.join(MULTITASKS)}, not {multitask!r}")
        self._check_room(None)  # (before the session is made: one it could not show is not made)
        commands, tenant = self.commands, self.caller.tenant
        await commands.budget.spend(tenant, queues=False)
        kept = {"cwd": params.get("cwd"), "mcpServers": params.get("mcpServers") or []}
        if multitask is not None:
            kept["multitask"] = multitask
        session = SessionRecord(
            session_id=new_session_id(),
            created_at=time.time(),
            tenant=tenant,
            agent=agent,
            metadata={"acp": kept},
            webhook=await commands.webhooks.url_for(tenant),
        )
        await commands.runs.create_session(session)
        await self._open(session.session_id, 0)
        return session.session_id

    async def _session(self, params: dict[str, Any]) -> SessionRecord:
        session_id = params.get("sessionId")
        if not isinstance(session_id, str) or not session_id:
            raise AcpError(INVALID_PARAMS, "sessionId: a session's id")
        await self.commands.auth.check_access(
            self.caller, session_id, self.commands.store
        )  # another tenant's: not found
        return await self.commands.store.get_session(session_id)

    def _check_room(self, session_id: str | None) -> None:
        """A connection shows at most MAX_SESSIONS sessions: one more (not `session_id`, shown already) is refused."""
        if session_id not in self.connection.sessions and len(self.connection.sessions) >= MAX_SESSIONS:
            raise AcpError(INVALID_REQUEST, f"a connection shows at most {MAX_SESSIONS} sessions: open another")

    async def _open(self, session_id: str, after: int) -> None:
        self._check_room(session_id)
        await self.connections.open_session(self.connection.connection_id, session_id, after)
        self.connection.sessions[session_id] = after

    async def _load(self, params: dict[str, Any], request_id: Any) -> list[Message]:
        """The session's history as updates (its questions still open asked again), then the answer: the
        session's stream goes on after the last event replayed."""
        session = await self._session(params)
        store, until = self.commands.store, session.last_event_id
        prompts = await self.connections.prompts(self.connection.connection_id)
        serves = client_methods(self.connection.capabilities)
        updates = AcpUpdates(session.session_id, prompts, answers_in(session), serves)
        messages: list[Message] = []
        after = 0
        while after < until and (stored := await store.read(session.session_id, after, REPLAY_READ)):
            stored = [event for event in stored if event.seq <= until]
            for parts, _ in updates.rendered(Batch([Chunk(stored)])):
                messages += parts
            after = stored[-1].seq if stored else until
        await self._open(session.session_id, until)
        # (`sessionId` beside ACP's result: a client that opens a session's stream when a message names it does)
        return [*messages, response(request_id, {"sessionId": session.session_id})]

    async def _prompt(self, params: dict[str, Any], request_id: Any) -> None:
        """A run of the prompt; while a turn is going, as the session's `multitask` says (`session/new`'s
        `_meta.multitask`), else as the deployment's chats do (`TOKENTAIL_CHAT_WHILE_RUNNING`): in line
        behind it (`enqueue`), taken in by it (`steer`: its end then answers this prompt too), or refused
        (`reject`: a JSON-RPC error, nothing queued)."""
        session = await self._session(params)
        text = prompt_text(params.get("prompt"))
        run_id, connection_id = new_run_id(), self.connection.connection_id
        # Known before the run is: its stream answers the prompt at the run's end, whichever gateway renders it.
        await self.connections.remember_prompt(connection_id, run_id, [request_id])
        if session.session_id not in self.connection.sessions:
            await self._open(session.session_id, session.last_event_id)
        commands = self.commands
        multitask = (session.metadata.get("acp") or {}).get("multitask")
        if multitask not in MULTITASKS:
            multitask = "steer" if commands.settings.chat_while_running == "steer" else "enqueue"
        args = (commands.store, commands.runs, commands.settings, commands.budget, self.caller, session.session_id)
        queued = await queue_follow_up(*args, CreateRun(input=text, multitask=multitask), run_id)
        if queued.run_id != run_id:  # it steered the run going
            answered_by = (await self.connections.prompts(connection_id)).get(queued.run_id, [])
            await self.connections.remember_prompt(connection_id, queued.run_id, [*answered_by, request_id])

    async def _answered(self, message: dict[str, Any]) -> None:
        """The client's answer to a question asked of it (any other answer is to nothing tokentail asked)."""
        asked = message.get("id")
        if not isinstance(asked, str) or not asked.startswith(QUESTION_PREFIX):
            return
        self.caller.require_chat()
        named = asked.removeprefix(QUESTION_PREFIX).split(":", 2)
        if len(named) != 3:
            return  # no question of ours: nothing to answer
        session_id, run_id, input_id = named
        session = await self._session({"sessionId": session_id})
        run = next((run for run in session.runs if run.run_id == run_id), None)
        question = next((q for q in run.asked if q.input_id == input_id), None) if run is not None else None
        if question is None or (answer := answer_of(question, message)) is None:
            return
        store, runs = self.commands.store, self.commands.runs
        # (answered meanwhile elsewhere, the REST API or the console, or gone: nothing left to do)
        with contextlib.suppress(*_NOT_TAKEN):
            try:
                await answer_question(store, runs, session_id, run_id, input_id, answer)
            except (InvalidInput, InputTooLarge) as exc:
                if question.client is None:
                    return
                # An editor's result too large to keep (a file past the event bound): the run hears so now.
                refused = {"error": f"its result could not be taken: {exc}"}
                await answer_question(store, runs, session_id, run_id, input_id, refused)


def answer_of(question: Question, message: dict[str, Any]) -> Any:
    """The answer a client's JSON-RPC response gives a question: an editor's result (or why it failed:
    the run's `client_request` raises it as a `ToolError`), an approval's `{"approved"}`, a choice; None
    for a choice the client cancelled (it stays open)."""
    result, error = message.get("result"), message.get("error")
    if question.client is not None:
        if isinstance(error, dict):
            return {"error": str(error.get("message", f"{question.client.method} failed"))}
        return result if isinstance(result, dict) else {"result": result}
    outcome = (result if isinstance(result, dict) else {}).get("outcome") or {}
    chosen = outcome.get("optionId") if outcome.get("outcome") == "selected" else None
    if question.kind == "approval":
        return {"approved": chosen == ALLOW}
    return chosen
