"""Answering a question a run asked (`ctx.ask`), from REST or a WebSocket: find it, check the answer
against its schema, then answer.lua, which records it once and queues the run again when it was the
last one the run waited for (several questions may be open at once, answered in any order)."""

from typing import Any

from tokentail.gateway.commands.writes import SessionWrites, check_waiting
from tokentail.gateway.schemas import check_storable
from tokentail.shared.store.reads import SessionStore
from tokentail.shared.store.scripts.runs import ExpireQuestion
from tokentail.shared.vocabulary.errors import (
    InputNotPending,
    InputTooLarge,
    InvalidInput,
    QuestionNotFound,
    RunNotFound,
)
from tokentail.shared.vocabulary.events import MAX_EVENT_BYTES, InputReceived
from tokentail.shared.vocabulary.records import RunRecord


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
    check_answer(run, input_id, answer)
    return await runs.answer(session_id, run, input_id, answer)


async def answer_all(runs: SessionWrites, session_id: str, run: RunRecord, answers: dict[str, Any]) -> int | None:
    """Answer several of the questions `run` (just read) waits for: each answer is checked first, so one
    refused answers none; one answered meanwhile (from another client or gateway) is left as it is.
    The seq of the last `input.received` written, None if each was answered elsewhere first."""
    for input_id, answer in answers.items():
        check_answer(run, input_id, answer)
    seq = None
    for input_id, answer in answers.items():
        try:
            seq = await runs.answer(session_id, run, input_id, answer)
        except InputNotPending:
            continue
    return seq


def check_answer(run: RunRecord, input_id: str, answer: Any) -> None:
    """Whether `answer` may answer the question `input_id` of `run`: pending, within the event bound,
    and matching the question's schema."""
    run_id = run.run_id
    question = next((question for question in run.asked if question.input_id == input_id), None)
    if question is None:
        raise QuestionNotFound(run_id, input_id)
    if input_id in run.answers:
        raise InputNotPending(f"question {input_id!r} is answered already")
    if input_id not in run.waiting_for:
        raise InputNotPending(f"run {run_id!r} no longer waits for an answer to {input_id!r} (it is {run.status})")
    try:
        check_storable(answer)
    except ValueError as exc:
        raise InvalidInput(f"the answer: {exc}") from None
    others = [open_id for open_id in run.waiting_for if open_id != input_id]  # what answer.lua adds to the event
    received = InputReceived(run_id=run_id, input_id=input_id, answer=answer, waiting_for=others)
    if len(received.model_dump_json().encode()) > MAX_EVENT_BYTES:
        raise InputTooLarge(MAX_EVENT_BYTES, "the answer's event", "bytes of JSON")
    # jsonschema (~0.08 s of a core) is imported by the first answer checked, not at start.
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(question.answer_schema).iter_errors(answer))
    if error is not None:
        where = "".join(f"[{part!r}]" for part in error.absolute_path) or "the answer"
        raise InvalidInput(f"{where} does not match the question's schema: {error.message}")


async def expire_question(
    store: SessionStore, runs: SessionWrites, session_id: str, run_id: str, input_id: str
) -> None:
    """End a question the run waits for now, as its deadline would (expire_question.lua): a reaper fails
    the run (`input_expired`) or gives the question its default answer, within a reap interval."""
    session = await store.get_session(session_id)
    run = session.run(run_id)
    if run is None:
        raise RunNotFound(session_id, run_id)
    lane = run.lane or session_id  # a child's question is its lane's
    reply = await runs.run(ExpireQuestion(runs.scope.run_keys(lane), runs.scope.args(lane), run_id, input_id))
    check_waiting(reply, session_id, run_id, input_id)
    if runs.settings.split_queue:
        await runs.leases.look_now(lane)
