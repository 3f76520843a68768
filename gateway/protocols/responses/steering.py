"""`response.steer` in the Responses API's WebSocket mode (socket.py), as the official SDKs send it
(`connection.response.steer(input=..., previous_response_id=...)`), on tokentail's steers
(docs/steering.md): the steer is stored with the session before `response.steer.accepted` is sent,
so unlike OpenAI's it outlives the socket, and the run takes it in once, at its next boundary.

    client → server   {"type": "response.steer", "previous_response_id", "input"}
    server → client   response.steer.accepted {steer: {id, previous_response_id}}: stored
                      response.steer.pending  {steer, reason: waiting_for_required_input, required_input}:
                          after accepted, when the response ended at a question: the steer waits, and the
                          answer's `response.create` resumes the run, which then takes it in
                      response.steer.failed   {steer: {id?, previous_response_id, input}, error: {code, ...}}:
                          response_not_found, invalid_input, response_already_completed,
                          response_not_active, too_many_pending_steers, steer_limit, rate_limit_exceeded

Taken in, the steer ends its response `incomplete` (reason `steered`) and the run goes on as the
successor response (render.py), which the socket's lane then follows (a client elsewhere: with
`GET /v1/responses/{the next id}?stream=true`). These events are the socket's answers, not its
response's stream: a resume does not replay them, and their `sequence_number` is that of the last
event the socket sent of the response (0 if none).
"""

from typing import Any

from tokentail.gateway.access.ids import new_steer_id
from tokentail.gateway.commands.turns import steer_active_run
from tokentail.gateway.commands.writes import SessionWrites
from tokentail.gateway.protocols.responses.render import INPUT_TOOL
from tokentail.gateway.protocols.responses.requests import ResponseRef, ResponseRequests, find_response
from tokentail.gateway.schemas import SteerRequest, check_storable
from tokentail.shared.vocabulary.errors import (
    InputTooLarge,
    RateLimited,
    RunNotActive,
    RunNotFound,
    SessionNotFound,
    SteerLimit,
    TooManySteers,
)
from tokentail.shared.vocabulary.records import RunRecord

STEER_FIELDS = frozenset({"type", "previous_response_id", "input"})
MESSAGE_FIELDS = frozenset({"type", "role", "content", "id", "status"})
Part = dict[str, Any]


class SteerFailed(Exception):
    """A `response.steer` answered with `response.steer.failed` (nothing stored)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def steer_text(message: dict[str, Any]) -> str:
    """The text a `response.steer` carries: its input as a string, or user messages (their text parts)."""
    if extra := set(message) - STEER_FIELDS:
        raise SteerFailed("invalid_input", f"response.steer takes only {sorted(STEER_FIELDS)}, not {sorted(extra)}")
    if not isinstance(message.get("previous_response_id"), str):
        raise SteerFailed("invalid_input", "previous_response_id: the id of the response to steer")
    given = message.get("input")
    if isinstance(given, str):
        text = given
    elif isinstance(given, list) and given:
        text = "\n\n".join(_message_text(item) for item in given)
    else:
        raise SteerFailed("invalid_input", "input: a string, or a non-empty list of user messages")
    if not text.strip():
        raise SteerFailed("invalid_input", "input: a steer says something (its text is empty)")
    try:
        check_storable(text)  # a lone surrogate: JSON can carry it, UTF-8 (and so Redis) cannot
    except ValueError as exc:
        raise SteerFailed("invalid_input", f"input: {exc}") from None
    return text


def _message_text(item: Any) -> str:
    if not isinstance(item, dict) or item.get("role") != "user" or item.get("type", "message") != "message":
        raise SteerFailed("invalid_input", "input: steering takes messages of the user role only")
    if extra := set(item) - MESSAGE_FIELDS:
        raise SteerFailed("invalid_input", f"input: a steering message takes no {sorted(extra)}")
    content = item.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not all(isinstance(part, dict) for part in content):
        raise SteerFailed("invalid_input", "input: a message's content is a string or a list of parts")
    if any(part.get("type") != "input_text" or not isinstance(part.get("text"), str) for part in content):
        raise SteerFailed("invalid_input", "input: tokentail's steers are text (input_text parts)")
    return "\n".join(part["text"] for part in content)


async def steer_response(
    requests: ResponseRequests, runs: SessionWrites, message: dict[str, Any]
) -> tuple[ResponseRef, str]:
    """Store the steer a `response.steer` carries for the run of its `previous_response_id`, if that
    response is still going on (or stopped at its run's question): its ref, and the steer's id."""
    text = steer_text(message)
    previous_response_id = message["previous_response_id"]
    try:
        ref = await find_response(requests.auth, requests.caller, requests.store, previous_response_id)
    except (SessionNotFound, RunNotFound):
        raise SteerFailed("response_not_found", f"no response {previous_response_id!r}") from None
    requests.caller.require_chat()
    run = ref.run
    if not run.active:
        raise SteerFailed("response_already_completed", f"response {ref.id} has ended: its run is {run.status}")
    if ref.segment != run.segment:
        raise SteerFailed("response_not_active", f"response {ref.id} has ended: its run went on from it")
    steer_id, settings = new_steer_id(), requests.settings
    try:
        body = SteerRequest(input=text, run_id=run.run_id)
        session_id = ref.session.session_id
        await steer_active_run(runs, settings, requests.budget, requests.caller.tenant, session_id, body, steer_id)
    except InputTooLarge as exc:
        raise SteerFailed("invalid_input", str(exc)) from None
    except RunNotActive:
        raise SteerFailed("response_already_completed", f"response {ref.id} has ended") from None
    except TooManySteers as exc:
        raise SteerFailed("too_many_pending_steers", str(exc)) from None
    except SteerLimit as exc:
        raise SteerFailed("steer_limit", str(exc)) from None
    except RateLimited as exc:
        raise SteerFailed("rate_limit_exceeded", str(exc)) from None
    return ref, steer_id


def accepted(steer_id: str, previous_response_id: str, sequence_number: int) -> Part:
    steer = {"id": steer_id, "previous_response_id": previous_response_id}
    return {"type": "response.steer.accepted", "sequence_number": sequence_number, "steer": steer}


def pending(steer_id: str, previous_response_id: str, run: RunRecord, sequence_number: int) -> Part | None:
    """`response.steer.pending` when the run waits for an answer (its response ended at the question):
    the stub of the input that answers it, as render.py's question item asks for it."""
    question = run.question
    if run.status != "waiting" or question is None:
        return None
    if question.kind == "approval" and question.call_id is not None:
        stub = {"type": "mcp_approval_response", "approval_request_id": question.input_id}
    else:
        stub = {"type": "function_call_output", "call_id": question.input_id, "name": INPUT_TOOL}
    return {
        "type": "response.steer.pending",
        "sequence_number": sequence_number,
        "steer": {"id": steer_id, "previous_response_id": previous_response_id},
        "reason": "waiting_for_required_input",
        "required_input": [stub],
    }


def failed(failure: SteerFailed, message: dict[str, Any], sequence_number: int) -> Part:
    given = message.get("input")
    if failure.code == "invalid_input" and not isinstance(given, str):
        given = []  # what failed is not an input of the event's schema: none is returned
    steer = {"previous_response_id": _sendable(str(message.get("previous_response_id", ""))), "input": given}
    if isinstance(given, str):
        steer["input"] = _sendable(given)
    error = {"code": failure.code, "message": str(failure), "type": "invalid_request_error"}
    return {"type": "response.steer.failed", "sequence_number": sequence_number, "steer": steer, "error": error}


def _sendable(text: str) -> str:
    """`text` as UTF-8 can carry it: a lone surrogate (which JSON can escape) becomes "?"."""
    return text.encode("utf-8", "replace").decode()
