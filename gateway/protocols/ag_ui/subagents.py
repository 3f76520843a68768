"""A session's sub-agent tree (docs/subagents.md) as AG-UI 1.1's subagents (the spec's
`events/subagents.mdx`): each child run one invocation, `subagentRunId` its run id.

What the client's verifier (`@ag-ui/client`'s `verifyEvents`) holds a stream to, and so this: an
invocation is announced (SUBAGENT_STARTED) before any event tagged with it, once per AG-UI run, its
parent invocation announced before it; it is closed (SUBAGENT_FINISHED, SUBAGENT_ERROR) once, and
every one open is closed before the AG-UI run finishes. A tokentail run may span several AG-UI runs
(one per answer to its questions): an invocation still going when one ends at a question is closed
as suspended, and announced again in the next ("an id MAY reappear in a later run").
"""

from dataclasses import dataclass
from typing import Any, assert_never

from ag_ui.core import (
    BaseEvent,
    Interrupt,
    SubagentErrorEvent,
    SubagentFinishedEvent,
    SubagentFinishedSuccessOutcome,
    SubagentFinishedSuspendedOutcome,
    SubagentStartedEvent,
)

from tokentail.gateway.reducer import operations as op
from tokentail.shared.vocabulary.events import Ending, RunCancelled, RunCompleted, RunFailed


@dataclass(slots=True)
class _Child:
    name: str
    parent: str
    call_id: str  # the parent's tool call that started it
    ended: bool = False


class Subagents:
    """The child runs a stream has seen, and which of them the client's AG-UI run has open."""

    def __init__(self) -> None:
        self._children: dict[str, _Child] = {}  # in spawn order
        self._active: dict[str, list[str]] = {}  # open in the client's AG-UI run: their own interrupt ids
        self._closed: set[str] = set()  # closed in the client's AG-UI run: their ids are not to be used again
        self._usage_of: str | None = None  # the tree whose children's token counts `usage` holds
        self._usage: dict[str, int] = {}

    def __contains__(self, run_id: str) -> bool:
        return run_id in self._children

    def started(self, operation: op.ChildStarted) -> None:
        self._children[operation.child_run_id] = _Child(operation.name, operation.run_id, operation.call_id)

    def new_run(self) -> None:
        """The client's AG-UI run ended (or the stream opens a new one): none is open in the next."""
        self._active, self._closed = {}, set()

    def root(self, run_id: str) -> str:
        """The run whose tree `run_id` is of: the AG-UI run its events belong to."""
        while (child := self._children.get(run_id)) is not None:
            run_id = child.parent
        return run_id

    def streaming(self, root: str, asking: set[str]) -> bool:
        """Whether a child of `root`'s tree goes on while the runs `asking` wait for answers: one
        that has not ended, asks nothing and is not waiting on a child that asks."""
        waiting = set()
        for run_id in asking:
            while run_id in self._children and run_id not in waiting:
                waiting.add(run_id)
                run_id = self._children[run_id].parent
        return any(not self._children[child].ended and child not in waiting for child in self.of_tree(root))

    def of_tree(self, root: str | None) -> list[str]:
        return [child for child in self._children if self.root(child) == root]

    def call_id(self, run_id: str, call_id: str) -> str:
        """A tool call's id on the wire: a child's prefixed with its run id (its model may name its
        calls as its parent's does, and AG-UI ties a call's events by the id alone)."""
        return f"{run_id}.{call_id}" if run_id in self._children else call_id

    def attributed(self, interrupt: Interrupt, run_id: str) -> Interrupt:
        """A question of run `run_id` as an interrupt of the AG-UI run: a child's tagged with it."""
        if run_id in self._children:
            interrupt.subagent_run_id = run_id
            if interrupt.tool_call_id is not None:
                interrupt.tool_call_id = self.call_id(run_id, interrupt.tool_call_id)
        return interrupt

    def announce(self, run_id: str) -> list[BaseEvent]:
        """SUBAGENT_STARTED for the child run and those above it that the client's AG-UI run has
        not had (its start came in an earlier AG-UI run, or the client had it before a resume)."""
        child = self._children.get(run_id)
        if child is None or run_id in self._active or run_id in self._closed:
            return []
        above = self.announce(child.parent)
        self._active[run_id] = []
        started = SubagentStartedEvent(
            subagent_run_id=run_id,
            name=child.name,
            parent_subagent_run_id=child.parent if child.parent in self._children else None,
            parent_tool_call_id=self.call_id(child.parent, child.call_id),
        )
        return [*above, started]

    def ended(self, run_id: str, ending: Ending) -> BaseEvent:
        """The child's end: SUBAGENT_FINISHED, or SUBAGENT_ERROR for a child failed or cancelled (its
        parent goes on: AG-UI's "ends the invocation, not the run"). Its usage is its tree's."""
        self._active.pop(run_id, None)
        self._closed.add(run_id)
        self._children[run_id].ended = True
        if ending.usage:
            root = self.root(run_id)
            if self._usage_of != root:
                self._usage_of, self._usage = root, {}
            self._usage = tokens(ending.usage, self._usage)
        match ending:
            case RunCompleted(output=output):
                return SubagentFinishedEvent(
                    subagent_run_id=run_id, outcome=SubagentFinishedSuccessOutcome(), result=output
                )
            case RunFailed(error=error):
                return SubagentErrorEvent(subagent_run_id=run_id, message=error.message, code=error.type)
            case RunCancelled(reason=reason):
                return SubagentErrorEvent(subagent_run_id=run_id, message=reason, code="cancelled")
            case _:
                assert_never(ending)

    def suspended(self, interrupts: list[Interrupt]) -> list[BaseEvent]:
        """Every one open, closed as suspended (the AG-UI run ends at questions), the latest started
        first, each with the interrupts it raised itself (one that waits on its child's has none)."""
        for interrupt in interrupts:
            if interrupt.subagent_run_id in self._active:
                self._active[interrupt.subagent_run_id].append(interrupt.id)
        events: list[BaseEvent] = []
        for run_id, interrupt_ids in reversed(self._active.items()):
            outcome = SubagentFinishedSuspendedOutcome(interrupt_ids=interrupt_ids or None)
            events.append(SubagentFinishedEvent(subagent_run_id=run_id, outcome=outcome))
        self.new_run()
        return events

    def usage(self, root: str) -> dict[str, int]:
        """The token counts of the children of `root`'s tree that ended: AG-UI counts them in the run's."""
        return self._usage if self._usage_of == root else {}


def tagged(event: BaseEvent, run_id: str) -> BaseEvent:
    """The event attributed to the child run (`subagentRunId`); SUBAGENT_* name theirs already."""
    if "subagent_run_id" in type(event).model_fields and getattr(event, "subagent_run_id", None) is None:
        event.subagent_run_id = run_id  # type: ignore[attr-defined]
    return event


def tokens(usage: dict[str, Any], more: dict[str, int]) -> dict[str, int]:
    """A run's token counts with `more` (its children's), as AG-UI's TokenUsage names them."""
    counts = dict(more)
    for name in ("input_tokens", "output_tokens"):
        if isinstance(count := usage.get(name), int):
            counts[name] = counts.get(name, 0) + count
    return counts
