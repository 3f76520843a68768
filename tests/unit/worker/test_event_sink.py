"""The run (`RunContext`) and a framework's sub-agent shown inline (`InlineChild`) are both an
`EventSink`, the one surface the framework adapters write to."""

import inspect

import pytest

from tokentail.worker.event_sink import EventSink
from tokentail.worker.run.children import InlineChild
from tokentail.worker.run.context import RunContext

# mypy (./scripts/check) checks this assignment: a write either class lacks, or takes otherwise (one more
# parameter without a default, another type), fails it. A parameter renamed it lets through: the test
# below holds the names.
SINKS: tuple[type[EventSink], ...] = (RunContext, InlineChild)

WRITES = [name for name in vars(EventSink) if not name.startswith("_")]


def test_the_sink_is_what_an_agent_writes() -> None:
    assert sorted(WRITES) == sorted(
        ["delta", "reasoning", "status", "data", "tool_started", "tool_finished", "subagent", "add_usage"]
    )


@pytest.mark.parametrize("sink", SINKS, ids=lambda sink: sink.__name__)
@pytest.mark.parametrize("write", WRITES)
def test_each_sink_takes_each_write_as_the_protocol_spells_it(sink: type[EventSink], write: str) -> None:
    # The protocol's parameters, each of the same name, kind and default (which mypy does not compare for
    # a positional one); any more an implementation takes have defaults (InlineChild.subagent's `agent`).
    spelled = inspect.signature(getattr(EventSink, write)).parameters
    taken = inspect.signature(getattr(sink, write)).parameters
    assert [(p.name, p.kind, p.default) for p in spelled.values()] == [
        (p.name, p.kind, p.default) for p in taken.values() if p.name in spelled
    ]
    assert all(p.default is not p.empty for name, p in taken.items() if name not in spelled)
    assert inspect.iscoroutinefunction(getattr(EventSink, write)) == inspect.iscoroutinefunction(getattr(sink, write))
