"""The operations a reducer (gateway/reducer/reducer.py) makes of a session's stored events: what a
client shows of its runs, protocol-neutral. A closed set: each renderer (gateway/protocols/*/render.py)
handles every one: `OperationCases` (at the end) dispatches each by its family to a method of the
renderer, whose `match` on `op.<Operation>(...)` ends in `assert_never`, so mypy names any it misses
at either level. Never changed once made (not frozen only because a frozen dataclass is slower to make, and a
delta makes one).
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, assert_never

from tokentail.shared.vocabulary.events import Gap, InputRequired, RunCancelled, RunCompleted, RunFailed, StartReason

BlockKind = Literal["text", "reasoning"]
ClosedBecause = Literal["next", "dropped", "completed", "stopped"]


@dataclass(slots=True)
class RunOpened:
    run_id: str
    input: str
    seq: int


@dataclass(slots=True)
class AttemptStarted:
    run_id: str
    attempt: int
    reason: StartReason  # `resume`: the same attempt goes on after an answer
    seq: int


@dataclass(slots=True)
class BlockOpened:
    run_id: str
    kind: BlockKind
    block: int  # the block's id: the id of its first delta
    seq: int


@dataclass(slots=True)
class BlockAppended:
    run_id: str
    kind: BlockKind
    block: int
    text: str
    seq: int


@dataclass(slots=True)
class BlockClosed:
    run_id: str
    kind: BlockKind
    block: int
    seq: int
    # Why: something else follows; a takeover's drop (which shows it again if it keeps it); the run
    # completed; the run failed or was cancelled (its text was cut short).
    reason: ClosedBecause = "next"


@dataclass(slots=True)
class ToolCalled:
    run_id: str
    call_id: str
    name: str
    arguments: dict[str, Any]
    seq: int


@dataclass(slots=True)
class ToolFinished:
    run_id: str
    call_id: str
    result: Any
    seq: int


@dataclass(slots=True)
class ToolFailedOp:
    run_id: str
    call_id: str
    error: str
    seq: int


@dataclass(slots=True)
class ToolDenied:
    """A person answered no to the call's approval: the tool did not run."""

    run_id: str
    call_id: str
    error: str
    seq: int


@dataclass(slots=True)
class StatusShown:
    run_id: str
    text: str
    seq: int


@dataclass(slots=True)
class DataShown:
    run_id: str
    name: str
    data: Any
    seq: int


@dataclass(slots=True)
class QuestionAsked:
    run_id: str
    question: InputRequired
    answered: bool  # its answer was known when the stream opened: the run goes on past it
    # The run stops here for this stream: the last of the questions asked at once (`question.more`
    # is 0), one of which was unanswered when the stream opened, and none answered then (else it stops
    # at the last of those answers). A response that ends at questions ends here.
    stops: bool
    seq: int


@dataclass(slots=True)
class QuestionAnswered:
    run_id: str
    input_id: str
    answer: Any
    waiting_for: list[str]  # the questions asked with it still unanswered: the run goes on when none is
    stops: bool  # the last answer known when the stream opened to questions some of which are still open
    seq: int


SteerStatus = Literal["accepted", "applied", "failed"]


@dataclass(slots=True)
class SteerShown:
    """A steer for the run (docs/steering.md): stored (`accepted`, with its `input`), taken in
    (`applied`: the turn before it ends here) or never to be (`failed`, with its `reason`)."""

    run_id: str
    steer_id: str
    status: SteerStatus
    input: str | None
    reason: str | None
    seq: int


@dataclass(slots=True)
class ContentDropped:
    """A takeover dropped the run's content after `after` (0: all of it, the run starts over).
    `kept`: what the run still shows, as operations (a block as opened, its kept text in one append,
    and closed), for a protocol that shows it again."""

    run_id: str
    after: int
    kept: tuple["Operation", ...]
    seq: int


@dataclass(slots=True)
class RunEnded:
    run_id: str
    ending: RunCompleted | RunFailed | RunCancelled
    seq: int


@dataclass(slots=True)
class ChildStarted:
    """Run `run_id` started a child run (`child_run_id`: docs/subagents.md) for its call `call_id`
    (the parent's tool call, or the spawn's own id). The child's own operations carry its run id."""

    run_id: str
    child_run_id: str
    agent: str
    name: str
    call_id: str
    input: str
    seq: int


@dataclass(slots=True)
class ChildEnded:
    """A child run of `run_id` ended (its own terminal event, or, open when an ancestor ended, cut
    short with it: a cancel's cascade may store the child's end after the ancestor's). Its parent
    goes on; the end of the run a reducer follows (or of a session's own run) is `RunEnded`."""

    run_id: str
    child_run_id: str
    ending: RunCompleted | RunFailed | RunCancelled
    seq: int


@dataclass(slots=True)
class GapFound:
    """Events were lost before the next (made by the gateway: never stored)."""

    gap: Gap


Operation = (
    RunOpened
    | AttemptStarted
    | BlockOpened
    | BlockAppended
    | BlockClosed
    | ToolCalled
    | ToolFinished
    | ToolFailedOp
    | ToolDenied
    | StatusShown
    | DataShown
    | QuestionAsked
    | QuestionAnswered
    | SteerShown
    | ContentDropped
    | RunEnded
    | ChildStarted
    | ChildEnded
    | GapFound
)

# The families, each a method of `OperationCases`: one place that says which operation is whose.
RunOperation = RunOpened | AttemptStarted | ContentDropped | RunEnded  # the run's own course
BlockOperation = BlockAppended | BlockOpened | BlockClosed  # its text and reasoning
ToolOperation = ToolCalled | ToolFinished | ToolFailedOp | ToolDenied
ShownOperation = StatusShown | DataShown | SteerShown  # what it shows beside its content
QuestionOperation = QuestionAsked | QuestionAnswered
ChildOperation = ChildStarted | ChildEnded

Out = TypeVar("Out")


class OperationCases(ABC, Generic[Out]):
    """What each operation becomes, a method per family: `cases(operation)` picks the method, and each
    method's own `match` ends in `assert_never`. So a renderer (or anything else that goes through the
    operations: LangGraph's messages, the AI SDK's child messages) is complete twice over: a family it
    has no method for cannot be made (the methods are abstract), and a case its method misses is named
    by mypy. A block's append, a token for every client, is tried first: one call more than one
    `match`, no lookup."""

    def cases(self, operation: Operation) -> Out:
        match operation:
            case BlockAppended() | BlockOpened() | BlockClosed():
                return self.on_block(operation)
            case ToolCalled() | ToolFinished() | ToolFailedOp() | ToolDenied():
                return self.on_tool(operation)
            case RunOpened() | AttemptStarted() | ContentDropped() | RunEnded():
                return self.on_run(operation)
            case StatusShown() | DataShown() | SteerShown():
                return self.on_shown(operation)
            case QuestionAsked() | QuestionAnswered():
                return self.on_question(operation)
            case ChildStarted() | ChildEnded():
                return self.on_child(operation)
            case GapFound():
                return self.on_gap(operation)
            case _:
                assert_never(operation)

    @abstractmethod
    def on_run(self, operation: RunOperation) -> Out: ...

    @abstractmethod
    def on_block(self, operation: BlockOperation) -> Out: ...

    @abstractmethod
    def on_tool(self, operation: ToolOperation) -> Out: ...

    @abstractmethod
    def on_shown(self, operation: ShownOperation) -> Out: ...

    @abstractmethod
    def on_question(self, operation: QuestionOperation) -> Out: ...

    @abstractmethod
    def on_child(self, operation: ChildOperation) -> Out: ...

    @abstractmethod
    def on_gap(self, operation: GapFound) -> Out: ...
