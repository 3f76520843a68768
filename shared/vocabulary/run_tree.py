"""A session's tree of runs (docs/subagents.md), as its records and its stream tell it: which runs are
below a run (`descendants`), and which runs a follower of one run reads (`Subtree`). Decided here once
for the store (the cancel of a tree), the reading room (`?run=&subtree=1`, the reducer), the worker
(a parent following its child) and the renderers (a task's questions).

The records' tree is the parents' `children` lists (in the order spawned): spawn.lua writes a child's
record and its id among its parent's children in one script, so each child's `parent_run_id` names the
parent that lists it. A child listed with no record (a fork keeps only the runs ended by its point) is
left out, and so is what it spawned; a run met twice (no tree the scripts write has a cycle: a child's
id is derived from its parent's) is walked once.
"""

from collections import deque
from collections.abc import Iterable

from tokentail.shared.vocabulary.records import RunRecord


def descendants(runs: Iterable[RunRecord], run_id: str, *, depth_first: bool = False) -> list[RunRecord]:
    """The runs below `run_id` (not itself) among the session's records `runs`, each after its parent and
    siblings in the order spawned: level by level, or with `depth_first` each child's whole branch
    before its next sibling (the order MCP lists a task's questions in). Empty when `run_id` has no record."""
    by_id = {run.run_id: run for run in runs}
    seen = {run_id}
    found: list[RunRecord] = []
    # Level by level, the oldest found is walked next; depth first, the newest (pushed last child first).
    todo = deque([by_id[run_id]] if run_id in by_id else [])
    while todo:
        run = todo.pop() if depth_first else todo.popleft()
        if run.run_id != run_id:
            found.append(run)
        children = [by_id[child] for child in run.children if child in by_id and child not in seen]
        seen.update(child.run_id for child in children)
        todo.extend(reversed(children) if depth_first else children)
    return found


class Subtree:
    """The runs a follower of one run reads the events of: the run, its descendants known as it starts
    reading (`known`), and every run a followed run spawns while it reads (told by its `run.spawned`,
    which comes before any event of the child's). A child's events always carry its own `run_id`."""

    __slots__ = ("runs",)

    def __init__(self, run_id: str, known: Iterable[str] = ()) -> None:
        self.runs = {run_id, *known}

    @classmethod
    def of(cls, runs: Iterable[RunRecord], run_id: str) -> "Subtree":
        """`run_id`'s subtree as the session's records hold it (a reader that starts in the middle of the
        stream never sees the `run.spawned` of the children started before)."""
        return cls(run_id, (run.run_id for run in descendants(runs, run_id)))

    def spawned(self, child: str, parent: str) -> bool:
        """A `run.spawned` of `child` by `parent`: whether it is followed (its parent is)."""
        if parent in self.runs:
            self.runs.add(child)
            return True
        return False

    def __contains__(self, run_id: object) -> bool:
        return run_id in self.runs
