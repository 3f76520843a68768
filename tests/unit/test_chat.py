"""What `tokentail chat` prints for each event: the answer on stdout, everything else on stderr."""

import pytest

from tokentail.chat import _show
from tokentail.shared.events import Event


def _event(kind: str, **data: object) -> Event:
    return Event(id=1, event=kind, data={"run_id": "r", **data})


def test_the_answer_alone_goes_to_stdout_and_thinking_and_data_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    status = 1
    for event in [
        _event("reasoning.delta", text="Thinking "),
        _event("reasoning.delta", text="it over."),
        _event("message.delta", text="Hello"),
        _event("data.chart", data={"points": [1, 2]}),
        _event("message.delta", text=" there"),
        _event("run.completed", output="Hello there", usage={}),
    ]:
        status = _show(event, status)
    out, err = capsys.readouterr()
    assert out == "Hello there\n"
    assert "Thinking it over." in err  # one line: the reasoning's deltas are not split by newlines
    assert "[data.chart: {'points': [1, 2]}]" in err
    assert status == 0
