"""An answer every route hands on (REST, the session socket, AG-UI `resume[]`, MCP `tasks/update`, A2A)
is checked once (gateway/commands/questions.py): numbers JSON has not, and text UTF-8 cannot carry,
are refused before anything is stored, and the store cannot write them anyway."""

import math

import pytest

from tokentail.gateway.commands.questions import check_answer
from tokentail.shared.store.reads import compact_json
from tokentail.shared.vocabulary.errors import InvalidInput
from tokentail.shared.vocabulary.records import Question, RunRecord


def _waiting() -> RunRecord:
    question = Question.model_validate({"input_id": "in_1", "kind": "json", "prompt": "How much?", "schema": {}})
    return RunRecord(run_id="r_1", input="hi", status="waiting", asked=[question], waiting_for=["in_1"])


@pytest.mark.parametrize(
    "answer", [math.nan, math.inf, -math.inf, {"amount": math.nan}, [1, math.inf], "a lone \ud800 surrogate"]
)
def test_an_answer_json_or_utf_8_cannot_carry_is_refused_on_every_route(answer: object) -> None:
    with pytest.raises(InvalidInput, match="the answer: (numbers must be finite|text must be valid Unicode)"):
        check_answer(_waiting(), "in_1", answer)
    check_answer(_waiting(), "in_1", {"amount": 1.5})  # a finite one is taken


def test_the_store_cannot_write_a_number_json_has_not() -> None:
    with pytest.raises(ValueError):
        compact_json({"answer": math.nan})
    assert compact_json({"answer": 1e308}) == '{"answer":1e+308}'
