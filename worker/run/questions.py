"""An attempt's questions (`RunContext.ask`, `RunContext.client_request`): those asked at once close as one
batch that ends the attempt (`WaitingForInput`: the run waits with no worker held); an attempt that goes
on after their answers asks them again and gets each answer back at once.

`Batch` is the mechanism questions and child runs (worker/run/children.py) share: what an attempt waits
for at once, gathered over a few turns of the event loop."""

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, NoReturn, TypeVar

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

from tokentail.shared.vocabulary.events import MAX_EVENT_BYTES, ClientRequest, InputKind
from tokentail.shared.vocabulary.records import OnExpiry, Question, RunRecord
from tokentail.worker.agent_errors import EventTooLarge, ToolError, WaitingForInput
from tokentail.worker.run.attempt import Attempt
from tokentail.worker.writes.writer import EventWriter

T = TypeVar("T")

APPROVAL_SCHEMA = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["approved"],
    "additionalProperties": False,
}

# How many turns of the event loop a question waits for others asked at once, after the run's writes on
# their way landed (concurrent tasks, as `asyncio.gather` runs them, reach their `ask` a few turns after
# their last write, a tool's start): counted, not timed, so a busy machine batches the same questions.
# Each question that joins waits as long again; one asked after its task waited on other I/O is the
# next batch's (asked when the run goes on).
BATCH_TURNS = 8
PROMPT_PARAMS_SHOWN = 200  # characters of a client request's params its question's prompt shows
# A client request's params at most (a file's content, written): its event carries them (within
# MAX_EVENT_BYTES), and the run's record keeps every question it asked.
CLIENT_PARAMS_BYTES = MAX_EVENT_BYTES // 2


async def _landed() -> None:
    """Nothing: written in order, once the writes on their way have landed."""


class Batch(Generic[T]):
    """What an attempt waits for at once (questions, children): the first call waits for others (the
    run's writes landed, then a few turns of the event loop, again while more come), then each raises
    `signal` of all of them, recorded together (worker/run/job.py)."""

    def __init__(
        self,
        writer: EventWriter,
        signal: Callable[[list[T]], BaseException],
        settled: Callable[[], Awaitable[object]] = _landed,
    ) -> None:
        """`settled`: what the batch also waits for before it closes (children being started)."""
        self._writer = writer
        self._signal = signal
        self._settled = settled
        self._items: list[T] = []
        self._closed: asyncio.Future[list[T]] | None = None

    async def join(self, item: T) -> NoReturn:
        if self._closed is None:
            self._closed = asyncio.ensure_future(self._close())
        if not self._closed.done():  # one after the batch closed is not in it: asked again on resume
            self._items.append(item)
        raise self._signal(await asyncio.shield(self._closed))

    async def _close(self) -> list[T]:
        joined = 0
        while joined != len(self._items):
            joined = len(self._items)
            await self._writer.in_order(_landed)  # what came before is recorded before them
            await self._settled()
            for _ in range(BATCH_TURNS):
                await asyncio.sleep(0)
        return list(self._items)


def answer_schema(kind: InputKind, choices: list[str] | None, schema: dict[str, Any] | None) -> dict[str, Any]:
    if kind == "approval":
        return APPROVAL_SCHEMA
    if kind == "choice":
        if not choices:
            raise ValueError("a choice needs choices")
        return {"type": "string", "enum": list(choices)}
    if kind == "text":
        return {"type": "string"}
    if schema is None:
        raise ValueError("kind='json' needs a schema")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:  # here, in the agent, rather than at the first answer
        raise ValueError(f"not a JSON Schema: {exc.message}") from None
    return schema


def client_prompt(method: str, params: dict[str, Any]) -> str:
    """The prompt of a question asked of the client's program (`RunContext.client_request`), as the REST
    API and the console show it: the request, its params cut short (a file's content is in the params the
    event carries already, once), and a digest of them whole, so that an attempt that goes on asks the
    same request again and tells it from another. ToolError for params past CLIENT_PARAMS_BYTES."""
    shown = json.dumps(params, ensure_ascii=False, sort_keys=True)
    if (size := len(whole := shown.encode())) > CLIENT_PARAMS_BYTES:
        raise ToolError(f"{method}: its params are {size} bytes of JSON, past {CLIENT_PARAMS_BYTES}")
    if len(shown) <= PROMPT_PARAMS_SHOWN:
        return f"{method} {shown}"
    digest = hashlib.sha256(whole).hexdigest()[:16]
    return f"{method} {shown[:PROMPT_PARAMS_SHOWN]}… ({digest})"


class Questions:
    """The questions of one attempt: the run's answered ones (asked again as the attempt goes on from the
    run's start) and the batch it asks now."""

    def __init__(self, writer: EventWriter, run: RunRecord, attempt: Attempt) -> None:
        self._attempt = attempt
        self._run_id = run.run_id
        self._asked = run.asked  # questions asked before this attempt, all answered
        self._answers = run.answers
        self._asks = 0  # `ask` calls so far in this attempt
        self._resumes = run.resumes
        self._returned: set[str] = set()  # the questions answered before it that those calls returned
        self._batch: Batch[Question] = Batch(writer, WaitingForInput)

    async def ask(
        self,
        prompt: str,
        *,
        kind: InputKind,
        choices: list[str] | None,
        schema: dict[str, Any] | None,
        expires_in: float | None,
        on_expiry: OnExpiry,
        default: Any,
        call_id: str | None,
        state: Any,
        client: ClientRequest | None = None,
    ) -> Any:
        """RunContext.ask's (`client`: asked of the client's program, RunContext.client_request's)."""
        if (answered := self._answered_before(prompt, call_id)) is not None:
            return self._answers.get(answered.input_id)
        schema_of_answer = answer_schema(kind, choices, schema)
        if on_expiry == "default" and (
            error := best_match(Draft202012Validator(schema_of_answer).iter_errors(default))
        ):
            raise ValueError(f"the default answer does not match the question's schema: {error.message}")
        try:
            json.dumps(state)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a question's state must be JSON: {exc}") from None
        now = time.time()
        question = Question(
            input_id=f"in_{secrets.token_hex(8)}",
            kind=kind,
            prompt=prompt,
            answer_schema=schema_of_answer,
            expires_at=None if expires_in is None else now + expires_in,
            asked_at=now,
            on_expiry=on_expiry,
            default=default,
            call_id=call_id,
            output_before=self._attempt.output,
            state=state,
            batch=self._resumes,
            client=client,
        )
        # (written by the run's lease, not its writer: bounded here as the writer bounds an event)
        if (size := len(question.event(self._run_id).model_dump_json().encode())) > MAX_EVENT_BYTES:
            raise EventTooLarge(f"an input.required event of {size} bytes exceeds {MAX_EVENT_BYTES}")
        await self._batch.join(question)

    def _answered_before(self, prompt: str, call_id: str | None) -> Question | None:
        """The question answered before this attempt that this `ask` call asks again (the run goes on
        from its start): of those not returned yet, the one asking the same (concurrent calls may
        come in another order than they did), else the next in order if it is about the same tool call
        (its prompt may have changed: a model wrote it); None past them, or for a call about another
        tool call (one asked after its batch closed, coming first now): a new question."""
        index, self._asks = self._asks, self._asks + 1
        if index >= len(self._asked):
            return None
        left = [question for question in self._asked if question.input_id not in self._returned]
        same = next((question for question in left if (question.prompt, question.call_id) == (prompt, call_id)), None)
        answered = same or (left[0] if left[0].call_id == call_id else None)
        if answered is not None:
            self._returned.add(answered.input_id)
        return answered

    def resumed_state(self) -> Any:
        """RunContext.resumed_state's: the last answered question's state, its batch asked again next."""
        if not self._asked:
            return None
        last = self._asked[-1].batch
        again = [q for q in self._asked if q.batch == last] if last is not None else self._asked[-1:]
        self._asks = len(self._asked) - len(again)
        self._returned = {question.input_id for question in self._asked[: self._asks]}
        self._attempt.skip_recorded()  # it goes on from the question: what follows is new
        return self._asked[-1].state
