"""Answering a question a run asked (`ctx.ask`), from REST or a WebSocket: find it, check the answer
against its schema, then answer.lua, which records it once and queues the run again when it was the
last one the run waited for (several questions may be open at once, answered in any order)."""

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from tokentail.gateway.commands.writes import SessionWrites
from tokentail.shared.errors import InputNotPending, InputTooLarge, InvalidInput, QuestionNotFound, RunNotFound
from tokentail.shared.events import MAX_EVENT_BYTES, InputReceived
from tokentail.shared.records import RunRecord
from tokentail.shared.store import SessionStore


async def answer_question(
    store: SessionStore, runs: SessionWrites, session_id: str, run_id: str, input_id: str, answer: Any
) -> int:
    """The seq of the `input.received` event the answer became."""
    session = await store.get_session(session_id)
    run = next((run for run in session.runs if run.run_id == run_id), None)
    if run is None:
        raise RunNotFound(session_id, run_id)
    return await answer_run(runs, session_id, run, input_id, answer)


async def answer_run(runs: SessionWrites, session_id: str, run: RunRecord, input_id: str, answer: Any) -> int:
    """`answer_question`, for the `run` record just read."""
    run_id = run.run_id
    question = next((question for question in run.asked if question.input_id == input_id), None)
    if question is None:
        raise QuestionNotFound(run_id, input_id)
    if input_id in run.answers:
        raise InputNotPending(f"question {input_id!r} is answered already")
    if input_id not in run.waiting_for:
        raise InputNotPending(f"run {run_id!r} no longer waits for an answer to {input_id!r} (it is {run.status})")
    if len(InputReceived(run_id=run_id, input_id=input_id, answer=answer).model_dump_json().encode()) > MAX_EVENT_BYTES:
        raise InputTooLarge(MAX_EVENT_BYTES, "the answer's event", "bytes of JSON")
    error = best_match(Draft202012Validator(question.answer_schema).iter_errors(answer))
    if error is not None:
        where = "".join(f"[{part!r}]" for part in error.absolute_path) or "the answer"
        raise InvalidInput(f"{where} does not match the question's schema: {error.message}")
    return await runs.answer(session_id, run, input_id, answer)
