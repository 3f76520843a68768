"""tokentail's exceptions on the agent's side: those its tools and framework adapters raise, those
`ctx` raises in it (to catch, or to let through), and the signals it must let through. Agent authors
import them from `tokentail` (`from tokentail import ChildFailed, SpawnRefused, ToolError`); a run
that lets one through ends with `run.failed` of the `error.type` named here (worker/run/job.py).

Exception                the base of the errors
├── ToolError            a tool failed in a way the model should hear about: its call is `tool.failed`
├── ChildFailed          a child run failed or was cancelled (`ctx.spawn`): the parent's to handle
├── SpawnRefused         a spawn past a bound: no child started (its `type`, and the `status` an API answers)
├── AgentError           the built-in agent did not answer within its steps (`agent_error`)
├── OutputTooLarge       the run's text past TOKENTAIL_MAX_OUTPUT_CHARS (`output_too_large`)
├── EventTooLarge        one event past MAX_EVENT_BYTES (`event_too_large`)
├── BlockingCall         a blocking call an adapter caught before it blocked (`blocked_event_loop`)
└── ValueError           a value that cannot be taken
    └── StepTooLarge     `ctx.step`'s result too large to record: nothing recorded (`step_too_large`)
BaseException            the signals that end an attempt while its run waits without a worker
├── WaitingForInput      `ctx.ask`: the run waits for answers
└── WaitingForChildren   `ctx.spawn`: the run waits for its children

(an agent's `except Exception` lets the signals through, as it does asyncio.CancelledError: catch
them only to raise them again.) `LeaseLost`, which a write of a worker that lost its run meets, is
the API's (shared/vocabulary/errors.py): the run is another worker's, there is nothing to handle.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokentail.shared.vocabulary.records import Question, RunRecord


class ToolError(Exception):
    """A tool failed in a way the model should hear about (bad arguments, a timeout, its own error)."""


class ChildFailed(Exception):
    """A child run failed or was cancelled: the parent's to handle (its own run goes on)."""

    def __init__(self, child: "RunRecord") -> None:
        self.run_id = child.run_id
        self.status = child.status
        self.error_type = child.error.type if child.error is not None else "cancelled"
        why = child.error.message if child.error is not None else child.reason or "cancelled"
        super().__init__(f"child run {child.run_id} ({child.agent}) {child.status}: {why}")


class SpawnRefused(Exception):
    """A spawn past a bound: `type` says which, `status` is what an API would answer (422, 429)."""

    def __init__(self, type_: str, status: int, message: str) -> None:
        super().__init__(message)
        self.type = type_
        self.status = status


class AgentError(Exception):
    pass


class OutputTooLarge(Exception):
    pass


class EventTooLarge(Exception):
    pass


class BlockingCall(Exception):
    """A blocking call caught before it blocks (a LangChain sync call on the worker's loop): the run
    fails with `blocked_event_loop` at once."""


class StepTooLarge(ValueError):
    """A step's result too large to record (shared/vocabulary/records.py MAX_STEP_BYTES), or one that would take
    the run's recorded steps past MAX_RUN_STEPS_BYTES."""


class WaitingForInput(BaseException):  # noqa: N818  (a signal, as asyncio.CancelledError: not an error)
    """Raised by `ctx.ask` to end the attempt while the run waits for answers: to the questions asked
    at once (one, or several from concurrent calls). A BaseException, so that an agent's `except
    Exception` lets it through."""

    def __init__(self, questions: "list[Question]") -> None:
        super().__init__(", ".join(question.input_id for question in questions))
        self.questions = questions


class WaitingForChildren(BaseException):  # noqa: N818  (a signal, as WaitingForInput)
    """Raised by `ctx.spawn` to end the attempt while the run waits for its children: those spawned at
    once (concurrent calls), or the first of them to end when some could not start yet."""

    def __init__(self, children: list[str], wake_on_first: bool) -> None:
        super().__init__(", ".join(children))
        self.children = children
        self.wake_on_first = wake_on_first
