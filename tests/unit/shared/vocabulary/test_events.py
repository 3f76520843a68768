import pytest

from tokentail.shared.vocabulary.events import EVENT_DATA, EventType, MessageDelta, RunCompleted, event_type_of


def test_every_event_type_has_a_data_model() -> None:
    assert set(EVENT_DATA) == set(EventType)


def test_serialised_data_is_one_line_even_with_newlines_in_text() -> None:
    data = MessageDelta(run_id="r_1", text="line one\nline two\r\n").model_dump_json()
    assert "\n" not in data and "\r" not in data
    assert MessageDelta.model_validate_json(data).text == "line one\nline two\r\n"


def test_event_type_of_data() -> None:
    assert event_type_of(RunCompleted(run_id="r", output="x", usage={})) is EventType.RUN_COMPLETED


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError):
        MessageDelta.model_validate({"run_id": "r", "text": "x", "extra": 1})
