"""What a Responses API request asks of tokentail: its body, its input items, and the run (or the
answer to a run's question) it becomes. gateway/protocols/responses/routes.py serves it; the events are
gateway/protocols/responses/render.py's.

A response is a run's segment (see there): a new input queues a run, in a new session, or in the
session of `previous_response_id` (in a fork of it, after that response, if it was not its
conversation's latest); an `mcp_approval_response` or a `function_call_output` for a
question answers it, and the run's next segment is the new response.
"""

import json
import time
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, Field

from tokentail.gateway.access.auth import Authenticator, Caller
from tokentail.gateway.access.ids import new_run_id, new_session_id
from tokentail.gateway.commands.branching import fork_after_run
from tokentail.gateway.commands.questions import answer_all
from tokentail.gateway.commands.turns import (
    RunCommands,
    check_chat_token_choices,
    check_params,
    check_size,
    follow_up_choices,
    queue_follow_up,
)
from tokentail.gateway.schemas import CreateRun, EndUser, RequestBody
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.vocabulary.catalog import BUILTIN_AGENTS, parse_model
from tokentail.shared.vocabulary.errors import InvalidInput, RunNotFound, SessionNotFound
from tokentail.shared.vocabulary.params import RunParams
from tokentail.shared.vocabulary.records import RunRecord, SessionRecord
from tokentail.shared.vocabulary.response_ids import parse_response_id, response_id


class CreateResponse(RequestBody):
    """`POST /v1/responses`. Fields of OpenAI's that tokentail does not use are accepted and ignored
    (docs/openai-responses.md lists them): an application sends what it sends to OpenAI. What is
    taken is checked as every request is (nesting, Unicode, finite numbers)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="a tokentail agent (TOKENTAIL_AGENTS), `scripted`, or `<provider>:<model>`")
    input: str | list[dict[str, Any]] = Field(description="text, or input items (see docs/openai-responses.md)")
    stream: bool = False
    background: bool = False
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    params: RunParams | None = Field(None, description="tokentail's run params (the SDK's `extra_body`)")
    safety_identifier: EndUser | None = Field(None, description="the end user")
    user: EndUser | None = Field(None, description="the end user (OpenAI's older name)")

    @property
    def end_user(self) -> str | None:
        """Whom the run counts against for the per-user cap: `safety_identifier`, else `user`."""
        return self.safety_identifier or self.user

    def run_params(self) -> dict[str, Any]:
        """`params`, with OpenAI's own sampling fields in tokentail's names."""
        given = self.params.given() if self.params else {}
        openai_named = {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_output_tokens}
        extra = {name: value for name, value in openai_named.items() if value is not None}
        try:
            return RunParams.model_validate({**extra, **given}).given()
        except ValueError as exc:
            raise InvalidInput(f"params: {exc}") from None


@dataclass
class ResponseInput:
    text: str | None  # the user's message, for a new run
    answers: dict[str, Any]  # answers to questions, by input id


def parse_input(value: str | list[dict[str, Any]]) -> ResponseInput:
    """The user's text and the answers in a request's `input`. The history of a conversation is
    tokentail's (use `previous_response_id`): an assistant message in the input is refused."""
    if isinstance(value, str):
        return ResponseInput(value, {})
    texts: list[str] = []
    answers: dict[str, Any] = {}
    for index, item in enumerate(value):
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role == "assistant":
                raise InvalidInput(
                    f"input[{index}]: an assistant message: the conversation's history is kept by tokentail, "
                    "send previous_response_id instead"
                )
            if role == "user":
                texts.append(_message_text(item.get("content"), index))
            elif role not in ("system", "developer"):  # the agent's own instructions are used
                raise InvalidInput(f"input[{index}].role: expected user, system or developer, got {role!r}")
        elif kind == "mcp_approval_response":
            approved = item.get("approve")
            if not isinstance(approved, bool) or not isinstance(item.get("approval_request_id"), str):
                raise InvalidInput(f"input[{index}]: an mcp_approval_response has approval_request_id and approve")
            reason = {"reason": item["reason"]} if isinstance(item.get("reason"), str) else {}
            answers[item["approval_request_id"]] = {"approved": approved, **reason}
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str) or not isinstance(item.get("output"), str):
                raise InvalidInput(f"input[{index}]: a function_call_output has call_id and output (a string)")
            answers[item["call_id"]] = _answer_of(item["output"])
        else:
            raise InvalidInput(
                f"input[{index}].type: {kind!r} is not supported (message, mcp_approval_response, function_call_output)"
            )
    if texts and answers:
        raise InvalidInput("input: send either a message or answers to the response's questions, not both")
    return ResponseInput("\n\n".join(texts) if texts else None, answers)


def _message_text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("input_text", "text"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise InvalidInput(f"input[{index}].content: {kind!r} is not supported (input_text)")
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise InvalidInput(f"input[{index}].content: expected a string or a list of input_text parts")


def _answer_of(output: str) -> Any:
    """A `tokentail_input` call's output: JSON if it parses (a choice, a JSON answer), else the text."""
    try:
        return json.loads(output)
    except ValueError:
        return output


@dataclass
class ResponseRef:
    session: SessionRecord
    run: RunRecord
    segment: int

    @property
    def id(self) -> str:
        return response_id(self.session.session_id, self.run.run_id, self.segment)

    def header(self, **known: Any) -> dict[str, Any]:
        """The Response object's fields that are not made from events."""
        runs = self.session.runs
        position = next(i for i, run in enumerate(runs) if run.run_id == self.run.run_id)
        if self.segment:
            previous: str | None = response_id(self.session.session_id, self.run.run_id, self.segment - 1)
        elif position:
            # A run a fork copied is named as in the session it was made in: the id the client sent.
            before = runs[position - 1]
            previous = response_id(self.session.origin_of(before), before.run_id, before.segment)
        else:
            previous = None
        return {
            "id": self.id,
            "model": self.run.agent or self.run.model or self.session.model or "default",
            "metadata": {str(k): str(v) for k, v in self.session.metadata.items()},
            "previous_response_id": previous,
            "instructions": None,
            "created_at": self.run.queued_at or self.session.created_at,
            **known,
        }

    def successor(self) -> "ResponseRef":
        """The response its run goes on as after it (an answer, or a steer taken in)."""
        return ResponseRef(self.session, self.run, self.segment + 1)

    @property
    def after(self) -> int:
        """Where its events are read from: the run's start (a segment is counted from there)."""
        return (self.run.queued_seq or 1) - 1


async def find_response(auth: Authenticator, caller: Caller, store: SessionStore, value: str) -> ResponseRef:
    """The response of id `value`, if the caller may read its session; else 404."""
    parsed = parse_response_id(value)
    if parsed is None:
        raise SessionNotFound(value)
    session_id, run_id, segment = parsed
    await auth.check_access(caller, session_id, store)
    session = await store.get_session(session_id)
    run = next((run for run in session.runs if run.run_id == run_id), None)
    if run is None or segment > run.segment:
        raise RunNotFound(session_id, value)
    return ResponseRef(session, run, segment)


class ResponseRequests(RunCommands):
    """`POST /v1/responses`: the run, or the answer, a request becomes."""

    async def create(self, body: CreateResponse) -> ResponseRef:
        given = parse_input(body.input)
        if body.previous_response_id is None:
            if given.answers:
                raise InvalidInput("input: answers need the previous_response_id of the response that asked")
            return await self._new_session(body, given.text or "")
        previous = await find_response(self.auth, self.caller, self.store, body.previous_response_id)
        self.caller.require_chat()
        if given.answers:
            return await self._answer(previous, given.answers)
        session = previous.session
        agent, model = self._model_choice(body.model)
        if agent is not None and agent != session.agent:
            raise InvalidInput(f"model: a conversation keeps its agent ({session.agent or 'none'}), not {agent!r}")
        follow_up = CreateRun(
            input=given.text or "",
            model=None if model in (None, session.model) else model,
            params=RunParams.model_validate(body.run_params()) if body.run_params() else None,
            user=body.end_user,
        )
        # Checked before a branch is made for it: a refused request makes nothing.
        check_size(follow_up.input, self.settings)
        check_chat_token_choices(self.caller, follow_up, self.settings, session.user)
        follow_up_choices(session, follow_up)
        session_id = await self._branch(previous)
        forked = session_id != session.session_id  # the fork spent the request's run of the minute
        args = (self.store, self.runs, self.settings, self.budget, self.caller, session_id, follow_up)
        run = await queue_follow_up(*args, spent=forked)
        session = await self.store.get_session(session_id)
        return ResponseRef(session, _run_in(session, run.run_id), 0)

    async def _branch(self, previous: ResponseRef) -> str:
        """The session a new message after `previous` goes in: its conversation's, when `previous` is
        its latest turn; else a fork of it after `previous`'s run, as OpenAI's conversations branch
        (gateway/commands/branching.py). A response that ended at a question its run went on from
        has no turn of its own to go on from: refused."""
        run, session = previous.run, previous.session
        if previous.segment < run.segment:
            latest = response_id(session.session_id, run.run_id, run.segment)
            raise InvalidInput(
                f"previous_response_id: response {previous.id} ended where its run went on from: "
                f"a new message goes after the run's last response, {latest}"
            )
        if session.runs[-1].run_id == run.run_id:
            return session.session_id
        self.caller.require_api_key()  # the branch is a session of its own, which a token of this one cannot use
        return (await fork_after_run(self.store, self.runs, self.settings, self.budget, session, run)).session_id

    def _model_choice(self, name: str) -> tuple[str | None, str | None]:
        """The agent, or else the model, that `model` names (`default`: the deployment's)."""
        if name == "default":
            return None, None
        if name in BUILTIN_AGENTS or name in self.settings.agents:
            return name, None
        try:
            parse_model(name)
        except ValueError as exc:
            agents = sorted(BUILTIN_AGENTS | set(self.settings.agents))
            raise InvalidInput(f"model: {exc} (or name an agent: {agents}, or `default`)") from None
        return None, name

    async def _new_session(self, body: CreateResponse, text: str) -> ResponseRef:
        self.caller.require_api_key()
        check_size(text, self.settings)
        agent, model = self._model_choice(body.model)
        params = body.run_params()
        check_params(model, params)
        check_chat_token_choices(self.caller, CreateRun(input=text), self.settings)
        await self.budget.spend(self.caller.tenant)
        session = SessionRecord(
            session_id=new_session_id(),
            created_at=time.time(),
            tenant=self.caller.tenant,
            model=model,
            agent=agent,
            params=params,
            metadata=body.metadata or {},
            webhook=await self.webhooks.url_for(self.caller.tenant),
            user=body.end_user,
        )
        run = RunRecord(run_id=new_run_id(), input=text, model=model, params=params, agent=agent)
        await self.runs.queue_run(session.session_id, run, create=session)
        session = await self.store.get_session(session.session_id)
        return ResponseRef(session, _run_in(session, run.run_id), 0)

    async def _answer(self, previous: ResponseRef, answers: dict[str, Any]) -> ResponseRef:
        run = previous.run
        # A response that ended at several questions (asked at once) goes on when each is answered:
        # one request answers them all, as OpenAI's approvals and tool outputs are sent together.
        if not run.waiting_for or not set(run.waiting_for) <= answers.keys():
            waits = f"waits for answers to {run.waiting_for!r}" if run.waiting_for else "waits for no answer"
            raise InvalidInput(f"response {previous.id} {waits}: the input answers {sorted(answers)}")
        await answer_all(self.runs, previous.session.session_id, run, {i: answers[i] for i in run.waiting_for})
        session = await self.store.get_session(previous.session.session_id)
        # The segment the answer opens (not the run's now: a steer taken in since opened another).
        return ResponseRef(session, _run_in(session, run.run_id), run.segment + 1)


def _run_in(session: SessionRecord, run_id: str) -> RunRecord:
    return next(run for run in session.runs if run.run_id == run_id)
