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


def _of(run_id: str, kind: str, **data: object) -> Event:
    return Event(id=1, event=kind, data={"run_id": run_id, **data})


def _spawned(child: str, parent: str, name: str, call_id: str) -> Event:
    cause = {"type": "tool_call", "call_id": call_id}
    return _of(child, "run.spawned", parent_run_id=parent, agent=name, name=name, input="dig", cause=cause)


def test_sub_agent_runs_are_nested_parts_of_their_own_closed_at_their_end(capsys: pytest.CaptureFixture[str]) -> None:
    screen = Screen()
    status = 1
    for event in [
        _of("root", "message.delta", text="Asking. "),
        _of("root", "tool.started", call_id="c1", name="researcher", arguments={"input": "dig"}),
        _spawned("a", "root", "researcher", "c1"),
        _of("a", "run.started", attempt=1, parent_run_id="root"),
        _of("root", "tool.started", call_id="c2", name="writer", arguments={"input": "dig"}),
        _spawned("b", "root", "writer", "c2"),
        _of("a", "message.delta", text="found "),
        _of("b", "message.delta", text="drafting\nline two"),
        _of("a", "message.delta", text="it\n"),
        _spawned("a1", "a", "checker", "c3"),
        _of("a1", "status", text="checking"),
        _of("a1", "run.completed", output="", usage={}, parent_run_id="a"),
        _of("a", "run.completed", output="found it", usage={}, parent_run_id="root"),
        _of("root", "tool.completed", call_id="c1", result="found it", duration_ms=1),
        _of("b", "run.failed", error={"type": "agent_error", "message": "no ink"}, parent_run_id="root"),
        _of("root", "tool.failed", call_id="c2", error="no ink", duration_ms=1),
        _of("root", "message.delta", text="Done."),
        _of("root", "run.completed", output="Asking. Done.", usage={}),
    ]:
        status = screen.show(event, status)
    out, err = capsys.readouterr()
    assert out == "Asking. Done.\n"  # the session's own run's answer alone, as it is
    assert status == 0
    lines = [line for line in err.splitlines() if line]
    assert lines == [
        "[running researcher {'input': 'dig'}]",
        "┌ researcher [c1] (researcher): dig",
        "[running writer {'input': 'dig'}]",
        "┌ writer [c2] (writer): dig",
        "│ writer [c2]: drafting",  # whole lines, each named: the two children interleave
        "│ researcher [c1]: found it",
        "│ ┌ checker [c3] (checker): dig",
        "│ │ checker [c3]: [checking]",
        "│ └ checker [c3] completed",
        "└ researcher [c1] completed",
        "[researcher done: found it]",
        "│ writer [c2]: line two",  # the rest of its text, at its end
        "└ writer [c2] failed: no ink",
        "[writer failed: no ink]",
    ]


def test_a_child_still_open_when_its_ancestor_ends_is_closed_with_it(capsys: pytest.CaptureFixture[str]) -> None:
    screen = Screen()
    status = 1
    for event in [
        _spawned("a", "root", "researcher", "c1"),
        _spawned("a1", "a", "checker", "c2"),
        _of("a1", "message.delta", text="half a line"),
        _of("root", "run.cancelled", reason="cancelled by request"),
        _of("a1", "run.cancelled", reason="cancelled by request", parent_run_id="a"),  # after: shown once
        _of("a", "run.cancelled", reason="cancelled by request", parent_run_id="root"),
    ]:
        status = screen.show(event, status)
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert lines == [
        "┌ researcher [c1] (researcher): dig",
        "│ ┌ checker [c2] (checker): dig",
        "[cancelled: cancelled by request]",
        "│ │ checker [c2]: half a line",
        "│ └ checker [c2] ended with its parent",
        "└ researcher [c1] ended with its parent",
    ]
    assert status == 1  # the session's run was cancelled; its children's ends set nothing


def test_two_children_of_one_agent_are_told_apart_by_their_call_ids(capsys: pytest.CaptureFixture[str]) -> None:
    screen = Screen()
    for event in [
        _spawned("a", "root", "researcher", "tides"),
        _spawned("b", "root", "researcher", "moon"),
        _of("a", "message.delta", text="the moon pulls\n"),
        _of("b", "message.delta", text="384,400 km\n"),
    ]:
        screen.show(event, 1)
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert lines == [
        "┌ researcher [tides] (researcher): dig",
        "┌ researcher [moon] (researcher): dig",
        "│ researcher [tides]: the moon pulls",
        "│ researcher [moon]: 384,400 km",
    ]
