"""What `tokentail chat` prints for each event: the answer on stdout, everything else on stderr."""

import pytest

from tokentail.chat import Screen, _given
from tokentail.shared.vocabulary.events import Event


def _event(kind: str, **data: object) -> Event:
    return Event(id=1, event=kind, data={"run_id": "r", **data})


def test_the_answer_alone_goes_to_stdout_and_thinking_and_data_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    status = 1
    screen = Screen()
    for event in [
        _event("reasoning.delta", text="Thinking "),
        _event("reasoning.delta", text="it over."),
        _event("message.delta", text="Hello"),
        _event("data.chart", data={"points": [1, 2]}),
        _event("message.delta", text=" there"),
        _event("run.completed", output="Hello there", usage={}),
    ]:
        status = screen.show(event, status)
    out, err = capsys.readouterr()
    assert out == "Hello there\n"
    assert "Thinking it over." in err  # one line: the reasoning's deltas are not split by newlines
    assert "[data.chart: {'points': [1, 2]}]" in err
    assert status == 0


def test_a_tool_s_end_is_shown_with_the_tool_s_name(capsys: pytest.CaptureFixture[str]) -> None:
    screen = Screen()
    for event in [
        _event("tool.started", call_id="call_7", name="calculator", arguments={"expression": "6*7"}),
        _event("tool.completed", call_id="call_7", result="42", duration_ms=3),
        _event("tool.started", call_id="call_8", name="search", arguments={"q": "x"}),
        _event("tool.failed", call_id="call_8", error="no network", duration_ms=3),
        _event("tool.completed", call_id="call_1", result="1", duration_ms=3),  # its start came before the stream
    ]:
        screen.show(event, 1)
    err = capsys.readouterr().err
    assert "[calculator done: 42]" in err and "[search failed: no network]" in err
    assert "[call_1 done: 1]" in err
    assert "call_7" not in err and "call_8" not in err


@pytest.mark.parametrize(
    ("kind", "given", "answer"),
    [
        ("approval", "yes", {"approved": True}),
        ("approval", "n", {"approved": False}),
        ("approval", '{"approved": false, "reason": "not now"}', {"approved": False, "reason": "not now"}),
        ("json", "3", 3),
        ("json", "null", None),
        ("choice", "blue", "blue"),
        ("text", "3", "3"),  # a text is never parsed
    ],
)
def test_an_answer_from_the_command_line_is_read_as_its_question_s_kind_takes_it(
    kind: str, given: str, answer: object
) -> None:
    assert _given({"kind": kind}, given) == answer


@pytest.mark.parametrize(("kind", "given"), [("approval", "maybe"), ("json", "three")])
def test_an_answer_its_question_cannot_take_says_why(kind: str, given: str) -> None:
    with pytest.raises(ValueError, match=f"--answer {given}: "):
        _given({"kind": kind}, given)
