"""OpenAI's Responses API streaming events (what `openai`'s `responses.create(stream=True)` and
`responses.retrieve(id, stream=True, starting_after=N)` read), from a run's stored events.

A response is a run, or the part of a run between two of its questions or steers (a "segment",
RunRecord.segment): a run that asks a person ends its response with the question as an output item,
and the answer, sent as an input item of a new response with `previous_response_id`, goes on as that
run's next segment; a steer the run takes in ends its response `incomplete` (reason `steered`), and
the run goes on with it as the next segment, the successor, whose id is found with no lookup
(`resp_<session><run>.<n+1>`).

    run.queued            response.created, response.queued (status queued)
    run.started           response.in_progress (a first start; a takeover or a resume adds nothing)
    message.delta         a `message` item: output_item.added and content_part.added once per
                          block, then response.output_text.delta
    reasoning.delta       a `reasoning` item, its summary streamed as reasoning_summary_text.delta
    tool.started          a `function_call` item: its arguments in one function_call_arguments.delta,
                          then .done and output_item.done (status completed: tokentail runs the tool)
    tool.completed/failed a `function_call_output` item (a failure's output: {"error": ...})
    run.retrying          the open items end `incomplete`, and every item of the dead attempt is left
                          out of the final response: the next attempt's text comes in new items (a
                          run that starts over after an answer streams again what came before its
                          question: the earlier response, complete, keeps it too)
    run.continued         nothing: the run goes on in its open item; one that drops events (the text
                          of a model turn a crash cut) ends their open item `incomplete` and leaves
                          their items out of the final response, as run.retrying does the attempt's
    run.completed         response.completed (status completed, output, usage)
    run.failed            response.failed (status failed, error {code: server_error, message})
    run.cancelled         response.incomplete (status cancelled): the SDK has no response.cancelled
    input.required        an approval of a tool call: an `mcp_approval_request` item (id: the
                          question's input id); any other question: a `function_call` item named
                          `tokentail_input` (call_id: the input id, arguments: prompt, kind, schema);
                          then response.completed: the run waits for the answer
    input.received        an answer opens the run's next segment: response.created, .in_progress
    steer.applied         the response ends response.incomplete (incomplete_details.reason `steered`)
                          and the steer opens the run's next segment: response.created, .in_progress
                          (a steer taken in again after a start over opens none: it has its segment)
    steer.accepted/failed nothing: WebSocket mode answers its `response.steer` itself (socket.py)
    status, data.<name>   nothing (the Responses API has no such item)
    gap                   an `error` event (code `gap`): the stream was trimmed past the run's start
    a child run's events  nothing: the Responses API has no place for a sub-agent (docs/subagents.md).
                          The child is its parent's function call (the parent's tool.started) and that
                          call's output (its tool.completed or .failed, when the parent takes the
                          child's result); a client following the child reads the native API
                          (`GET /v1/sessions/{sid}/events?run=<child>&subtree=1`)

Each event's `sequence_number` counts the events of its response from 0 (`response.created`): a
replay from the run's start numbers them the same, so `starting_after=N` sends only what follows
N, on any gateway. Item ids are made from event ids for the same reason. The items themselves, and
their events, are the response's output (gateway/protocols/responses/output.py).
"""

from typing import Any, assert_never

from tokentail.gateway.protocols.responses.finished import STREAM_BYTES
from tokentail.gateway.protocols.responses.output import Numbering, Part, ResponseOutput, copied
from tokentail.gateway.reading.renderer import FramedRenderer, compact
from tokentail.gateway.reducer import operations as op
from tokentail.gateway.reducer.reducer import Reducer
from tokentail.shared.store.reads import StoredEvent
from tokentail.shared.vocabulary.events import Ending, Gap, InputRequired, RunCancelled, RunCompleted, RunFailed

INPUT_TOOL = "tokentail_input"  # the function_call item a question (not an approval) becomes
SERVER_LABEL = "tokentail"  # the mcp_approval_request's server_label
MEDIA_TYPE = "text/event-stream; charset=utf-8"


class ResponseEvents(FramedRenderer[Part], op.OperationCases[list[Part]]):
    """One response (`segment` of run `run_id`) as the SDK's stream events. `header` holds the
    Response object's fields that are not built from events (id, model, metadata, ...)."""

    media_type = MEDIA_TYPE

    def __init__(
        self, run_id: str, segment: int, header: dict[str, Any], starting_after: int = -1, keep: bool = False
    ) -> None:
        """`keep`: keep the frames sent (`kept`, from `starting_after` + 1 on), for a FinishedStreams
        (gateway/protocols/responses/finished.py) once the response has ended."""
        super().__init__(Reducer(run_id))
        self.segment = segment
        self.header = header
        self.starting_after = starting_after
        self.kept: list[bytes] | None = [] if keep else None
        self._kept_bytes = 0
        self.numbering = Numbering()
        self.segments_seen = 0  # segments of the run begun so far, less one (answers, steers taken in)
        self.incomplete_reason: str | None = None
        # What opened this response's segment: ("input", the answers' input ids: of the questions asked
        # at once) or ("steer", its id); None for the run's first.
        self.opened_by: tuple[str, ...] | None = None
        self._answered: list[str] = []  # the answers so far to the questions the run waits for
        self._steers_taken: set[str] = set()
        self.status = "queued"
        self.created_at: float | None = None
        self.completed_at: float | None = None
        self.usage: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.output = ResponseOutput(self.numbering)
        self._tools: dict[str, tuple[str, str]] = {}  # call_id -> (name, arguments), for approvals
        self._created = False  # response.created was sent

    # -- what the SDK reads ------------------------------------------------------------------------

    def response(self) -> Part:
        """The Response object as the events so far make it."""
        return {
            **self.header,
            "object": "response",
            "created_at": self.created_at if self.created_at is not None else self.header.get("created_at", 0),
            "status": self.status,
            "output": self.output.listed(),
            "error": self.error,
            "incomplete_details": None if self.incomplete_reason is None else {"reason": self.incomplete_reason},
            "completed_at": self.completed_at,
            "usage": _usage(self.usage) if self.usage is not None else None,
            "parallel_tool_calls": False,
            "tool_choice": "auto",
            "tools": [],
        }

    def frames(self, parts: list[Part], seq: int | None) -> bytes:
        made = [frame(part) for part in parts if part["sequence_number"] > self.starting_after]
        if self.kept is not None:
            self.kept += made
            self._kept_bytes += sum(len(one) for one in made)
            if self._kept_bytes > STREAM_BYTES:  # too long to keep: what one reader holds stays bounded
                self.kept = None
        return b"".join(made)

    def pass_quietly(self, events: list[StoredEvent], index: int) -> int:
        """A resume's deltas before `starting_after`, in the open item: only counted."""
        if self.numbering.next > self.starting_after or not self.output.is_open or not self._in_segment:
            return 0
        taken, texts = self.reducer.pass_deltas(events, index, self.starting_after - self.numbering.next + 1)
        self.output.passed(texts)
        self.numbering.next += len(texts)
        return taken

    def _lifecycle(self, type_: str) -> Part:
        return self.numbering.event(type_, response=copied(self.response()))

    @property
    def _in_segment(self) -> bool:
        return self.segments_seen == self.segment

    @property
    def steered(self) -> bool:
        """It ended where its run took in a steer: the run goes on as the next segment."""
        return self.incomplete_reason == "steered"

    # -- the run's operations ---------------------------------------------------------------------

    def render(self, operation: op.Operation) -> list[Part]:
        """The operation's events, after the response's creation for one first seen mid-way (a
        stream trimmed past the run's start): the SDK takes no item before it."""
        if not isinstance(operation, op.GapFound) and operation.run_id != self.reducer.run_id:
            return []  # a child run's own (its text, tools, questions): not the parent's response's
        starts = isinstance(operation, op.RunOpened | op.AttemptStarted | op.QuestionAnswered | op.GapFound)
        if self._created or starts or not self._in_segment:
            return self.cases(operation)
        self._created, self.created_at, self.status = True, self.reducer.event_ts, "in_progress"
        return [self._lifecycle("response.created"), self._lifecycle("response.in_progress"), *self.cases(operation)]

    def on_run(self, operation: op.RunOperation) -> list[Part]:
        match operation:
            case op.RunOpened():
                if self.segment != 0:
                    return []
                self._created, self.created_at = True, self.reducer.event_ts
                return [self._lifecycle("response.created"), self._lifecycle("response.queued")]
            case op.AttemptStarted():
                if not self._in_segment or self.status != "queued":
                    return []
                self.status = "in_progress"
                return [self._lifecycle("response.in_progress")]
            case op.ContentDropped(after=after, kept=kept):
                return self.output.drop(after, kept) if self._in_segment else []
            case op.RunEnded(ending=ending):
                return self._ended(ending)
            case _:
                assert_never(operation)

    def on_block(self, operation: op.BlockOperation) -> list[Part]:
        match operation:
            case op.BlockAppended(kind=kind, text=text):
                return self._delta(kind, text) if self._in_segment and self.output.is_open else []
            case op.BlockOpened(kind=kind, block=block):
                return self.output.open(kind, block) if self._in_segment else []
            case op.BlockClosed(reason="dropped"):
                return []  # the drop that follows ends it, with the text it keeps
            case op.BlockClosed(reason=reason):
                ended = "completed" if reason in ("next", "completed") else "incomplete"
                return self.output.close(ended) if self._in_segment else []
            case _:
                assert_never(operation)

    def on_tool(self, operation: op.ToolOperation) -> list[Part]:
        match operation:
            case op.ToolCalled():
                return self._tool_call(operation)
            case op.ToolFinished(call_id=call_id, result=result, seq=seq):
                return self._tool_output(call_id, result, seq)
            case (
                op.ToolFailedOp(call_id=call_id, error=error, seq=seq)
                | op.ToolDenied(call_id=call_id, error=error, seq=seq)
            ):
                return self._tool_output(call_id, {"error": error}, seq)
            case _:
                assert_never(operation)

    def on_shown(self, operation: op.ShownOperation) -> list[Part]:
        if not isinstance(operation, op.SteerShown) or operation.status != "applied":
            return []  # the Responses API has no such item (its steers are its WebSocket mode's)
        if operation.steer_id in self._steers_taken:
            return []
        self._steers_taken.add(operation.steer_id)
        self.incomplete_reason = "steered" if self._in_segment else None
        return [*self._end("incomplete", "response.incomplete"), *self._next_segment(("steer", operation.steer_id))]

    def on_question(self, operation: op.QuestionOperation) -> list[Part]:
        if isinstance(operation, op.QuestionAsked):
            return self._question(operation.question, operation.seq) if self._in_segment else []
        self._answered.append(operation.input_id)
        if operation.waiting_for:
            return []
        answered, self._answered = self._answered, []
        return self._next_segment(("input", *answered))  # the last answer: the run goes on

    def on_child(self, operation: op.ChildOperation) -> list[Part]:
        return []  # the parent's function call of the child shows it (tool.started, tool.completed)

    def on_gap(self, operation: op.GapFound) -> list[Part]:
        return [self.numbering.event("error", code="gap", message=_gap_message(operation.gap), param=None)]

    def _next_segment(self, opened_by: tuple[str, ...]) -> list[Part]:
        """Answers or a steer taken in: the run goes on as its next segment, this response if it is."""
        self.segments_seen += 1
        if not self._in_segment:
            return []
        self.opened_by = opened_by
        self._created, self.created_at, self.status = True, self.reducer.event_ts, "in_progress"
        return [self._lifecycle("response.created"), self._lifecycle("response.in_progress")]

    def _ended(self, ending: Ending) -> list[Part]:
        match ending:
            case RunCompleted(usage=usage):
                self.usage = usage
                return self._end("completed", "response.completed")
            case RunFailed(error=error):
                self.error = {"code": "server_error", "message": f"{error.type}: {error.message}"}
                return self._end("failed", "response.failed")
            case RunCancelled():
                return self._end("cancelled", "response.incomplete")
            case _:
                assert_never(ending)

    def _tool_call(self, call: op.ToolCalled) -> list[Part]:
        arguments = compact(call.arguments)
        self._tools[call.call_id] = (call.name, arguments)
        if not self._in_segment:
            return []
        return self.output.add_call(f"fc_{call.seq}", call.call_id, call.name, arguments)

    def _question(self, question: InputRequired, seq: int) -> list[Part]:
        """An approval of a tool call: an `mcp_approval_request` item; any other question: a
        `function_call` of `tokentail_input`. The response completes with it (with the last of those
        asked at once): the run waits."""
        call_id = question.call_id
        if question.kind == "approval" and call_id in self._tools:
            name, arguments = self._tools[call_id]
            item: Part = {
                "type": "mcp_approval_request",
                "id": question.input_id,
                "name": name,
                "arguments": arguments,
                "server_label": SERVER_LABEL,
            }
        else:
            asked = {"prompt": question.prompt, "kind": question.kind, "schema": question.answer_schema}
            item = {
                "type": "function_call",
                "id": f"fc_{seq}",
                "call_id": question.input_id,
                "name": INPUT_TOOL,
                "arguments": compact(asked),
                "status": "completed",
            }
        parts = [*self.output.close("completed"), *self.output.add_whole(item)]
        if question.more == 0:  # questions asked at once are items of one response, which ends at the last
            parts += self._end("completed", "response.completed")
        return parts

    def _tool_output(self, call_id: str, output: Any, seq: int) -> list[Part]:
        if not self._in_segment:
            return []
        text = output if isinstance(output, str) else compact(output)
        item = {"type": "function_call_output", "id": f"fco_{seq}", "call_id": call_id, "output": text}
        return self.output.add_whole({**item, "status": "completed"})

    def _delta(self, kind: op.BlockKind, text: str) -> list[Part]:
        """Text (or reasoning) streamed, in the open item."""
        if self.numbering.next <= self.starting_after:  # a resume past it: only counted (most of a resume)
            self.output.passed([text])
            self.numbering.next += 1
            return []
        return [self.output.delta(kind, text)]

    def _end(self, status: str, type_: str) -> list[Part]:
        if not self._in_segment:
            return []
        parts = self.output.close("completed" if status == "completed" else "incomplete")
        self.status = status
        self.completed_at = self.reducer.event_ts
        self.finished = True
        return [*parts, self._lifecycle(type_)]


def frame(part: Part) -> bytes:
    return f"event: {part['type']}\ndata: {compact(part)}\n\n".encode()


def _gap_message(gap: Gap) -> str:
    return f"events were lost before this response: {gap.reason}, first available {gap.first_available}"


def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    input_tokens, output_tokens = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }
