"""`tokentail chat`: a run's answer streamed to the terminal, progress on stderr.

A question the run asks (`input.required`) that is still open takes the next `--answer` given on
the command line, else is asked at the terminal. With neither (a script, CI: stdin is not a
terminal) the command says how to answer it and exits `INPUT_REQUIRED`, rather than wait for an
answer no one is there to give. A question replayed from earlier, answered since, is skipped.
"""

import json
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click

from tokentail.client import ApiError, Tokentail
from tokentail.shared.vocabulary.events import Event

INPUT_REQUIRED = 3  # the exit status when a question is left to answer, with no terminal to ask it at


class Unanswered(Exception):
    """An open question with no `--answer` left and no terminal to ask it at."""

    def __init__(self, question: dict[str, Any]) -> None:
        super().__init__(question["input_id"])
        self.question = question


def run_chat(
    url: str,
    question: str | None,
    session_id: str | None,
    model: str | None,
    agent: str | None,
    params: dict[str, object],
    api_key: str | None = None,
    reach: Sequence[str] = (),
    answers: Sequence[str] = (),
    fork_at: int | None = None,
) -> int:
    """Returns the exit status: 0 when the last run completed, INPUT_REQUIRED when it waits for an
    answer that `answers` (the `--answer`s, in the order the questions come) and the terminal cannot
    give, 1 otherwise. `reach`: the options that reach this gateway again (`--url ...`), for the
    commands it suggests. `fork_at`: fork session `session_id` at that event first, and follow the
    fork from there (the question: the instructions its run goes on with)."""
    screen = Screen()
    left = list(answers)
    with Tokentail(url, api_key=api_key) as client:
        try:
            session_id, after = _begin(client, question, session_id, model, agent, params, fork_at)
            status = 1
            for event in client.stream(session_id, last_event_id=after, on_reconnect=_reconnecting):
                status = screen.show(event, status)
                if event.event == "input.required":
                    _answer(client, session_id, event.data, left)
        except Unanswered as exc:
            assert session_id is not None
            # Every question open now, not only the one the stream came to: asked at once, they are
            # answered at once (one `--answer` each, in the order they were asked).
            open_questions = client.get_session(session_id)["pending_inputs"] or [exc.question]
            click.secho(_how_to_answer(url, api_key, reach, session_id, open_questions), err=True, fg="cyan")
            return INPUT_REQUIRED
        except ApiError as exc:
            click.echo(f"tokentail: {exc.message} ({exc.status})", err=True)
            if exc.status == 401 and api_key is None:
                click.echo(
                    "tokentail: this gateway needs an API key: pass --api-key or set TOKENTAIL_API_KEY", err=True
                )
            return 1
        except KeyboardInterrupt:  # Ctrl-C stops the watching, not the run
            if session_id is not None:
                click.echo(
                    f"\n[stopped watching; the run goes on in session {session_id}: replay and follow it with"
                    f"  {_command(reach, session_id)}]",
                    err=True,
                )
            return 130
    click.echo(f'[session {session_id}: continue with  {_command(reach, session_id)} "..."]', err=True)
    return status


def _begin(
    client: Tokentail,
    question: str | None,
    session_id: str | None,
    model: str | None,
    agent: str | None,
    params: dict[str, object],
    fork_at: int | None,
) -> tuple[str, int | None]:
    """What `run_chat` follows, having asked: the session, and the event after which to show it."""
    if fork_at is not None and session_id is not None:
        fork = client.fork(
            session_id, at=fork_at, model=model, agent=agent, params=params or None, instructions=question
        )
        click.echo(f"[forked at event {fork_at}: session {fork['session_id']}]", err=True)
        return fork["session_id"], fork_at
    if session_id is None:
        return client.create_session(question, model=model, params=params or None, agent=agent).session_id, None
    if question is None:
        return session_id, None  # replay the session, then follow it
    after = client.get_session(session_id)["last_event_id"]  # show only the new run
    client.send(session_id, question, model=model, params=params or None)
    return session_id, after


def _command(reach: Sequence[str], session_id: str) -> str:
    """The `tokentail chat` that gets to this session again: the same gateway (and key), `--session`."""
    return shlex.join(["tokentail", "chat", *reach, "--session", session_id])


def _answer(client: Tokentail, session_id: str, question: dict[str, Any], left: list[str]) -> None:
    """Answer `question` if it is still open (among the session's `pending_inputs`; a replayed one
    answered since is not): with the next of the answers `left`, else at the terminal, until the
    gateway takes one (or another client answered). Raises Unanswered when there is neither."""
    pending = client.get_session(session_id)["pending_inputs"]
    if question["input_id"] not in {open_question["input_id"] for open_question in pending}:
        return  # answered, expired or cancelled: the stream goes on to say so
    while True:
        if left:
            try:
                answer = _given(question, left.pop(0))
            except ValueError as exc:
                click.secho(f"[{exc}]", err=True, fg="yellow")
                continue
        elif _interactive():
            answer = _prompt(question)
        else:
            raise Unanswered(question)
        try:
            client.answer(session_id, question["run_id"], question["input_id"], answer)
            return
        except ApiError as exc:
            click.secho(f"[{exc.message}]", err=True, fg="yellow")
            if exc.status != 422:  # answered elsewhere, expired, or the run was cancelled
                return


def _interactive() -> bool:
    return sys.stdin.isatty()


def _given(question: dict[str, Any], text: str) -> Any:
    """An `--answer` as the question's kind takes it: an approval's yes or no (or its JSON object,
    with a `reason`), a JSON value for `json`, the text itself for `choice` and `text`."""
    kind = question["kind"]
    if kind == "approval" and not text.lstrip().startswith("{"):
        try:
            return {"approved": click.BOOL.convert(text, None, None)}
        except click.BadParameter:
            raise ValueError(f"--answer {text}: an approval is yes or no") from None
    if kind in ("approval", "json"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"--answer {text}: not JSON ({exc})") from None
    return text


def _how_to_answer(
    url: str, api_key: str | None, reach: Sequence[str], session_id: str, questions: list[dict[str, Any]]
) -> str:
    """What to say of the open questions no one here can answer: which ones, and the two ways to
    answer them (one `--answer` each, in their order; or one POST each)."""
    examples = [_example(question) for question in questions]
    givens = [argument for given, _ in examples for argument in ("--answer", given)]
    command = shlex.join(["tokentail", "chat", *reach, "--session", session_id, *givens])
    key = " -H 'Authorization: Bearer <your key>'" if api_key is not None else ""
    several = len(questions) > 1
    lines = [
        f"\n[the run waits for {f'{len(questions)} answers' if several else 'an answer'}"
        f" ({', '.join(question['kind'] for question in questions)}), and stdin is not a terminal to ask"
        f" {'them' if several else 'it'} at"
    ]
    for question in questions:
        prompt = f": {question['prompt']}" if several else ""
        lines.append(f" session {session_id}, run {question['run_id']}, input_id {question['input_id']}{prompt}")
    lines.append(f" answer {'them' if several else 'it'} with  {command}")
    if several:
        lines.append(" or with one POST each:")
    for question, (_, answer) in zip(questions, examples, strict=True):
        body = json.dumps({"input_id": question["input_id"], "answer": answer})
        lines.append(
            f" {'  ' if several else 'or'}  curl -X POST {url}/v1/sessions/{session_id}/runs/{question['run_id']}"
            f"/input{key} -H 'Content-Type: application/json' -d {shlex.quote(body)}"
        )
    return "\n".join(lines) + "]"


def _example(question: dict[str, Any]) -> tuple[str, Any]:
    """An answer to show, as `--answer` takes it and as the API does."""
    kind = question["kind"]
    if kind == "approval":
        return "yes", {"approved": True}
    if kind == "choice" and (choices := (question.get("schema") or {}).get("enum")):
        return str(choices[0]), choices[0]
    placeholder = "<JSON>" if kind == "json" else "<your answer>"
    return placeholder, placeholder


def _prompt(question: dict[str, Any]) -> Any:
    prompt, kind = question["prompt"], question["kind"]
    if kind == "approval":
        return {"approved": click.confirm(prompt, err=True)}
    if kind == "choice":
        return click.prompt(prompt, type=click.Choice(question["schema"]["enum"]), err=True)
    if kind == "text":
        return click.prompt(prompt, err=True)
    while True:
        try:
            return json.loads(click.prompt(f"{prompt} (JSON)", err=True))
        except ValueError as exc:
            click.secho(f"[not JSON: {exc}]", err=True, fg="yellow")


def _reconnecting(error: Exception, delay: float) -> None:
    click.secho(
        f"\n[connection lost ({type(error).__name__}); reconnecting in {delay:.1f} s...]", err=True, fg="yellow"
    )


# What each event prints to stderr (dimmed, or in a colour); the answer's text goes to stdout.
_PROGRESS: dict[str, tuple[Callable[[dict[str, Any]], str], str | None]] = {
    "run.queued": (lambda d: f"> {d['input']}", None),
    "reasoning.delta": (lambda d: d["text"], None),  # thinking: dimmed, apart from the answer
    "status": (lambda d: f"\n[{d['text']}]", None),
    "tool.started": (lambda d: f"\n[running {d['name']} {d['arguments']}]", None),
    # A tool's end names its call, not the tool: Screen puts the name from its start in `name`.
    "tool.completed": (lambda d: f"[{d['name']} done: {d['result']}]", None),
    "tool.failed": (lambda d: f"[{d['name']} failed: {d['error']}]", "yellow"),
    "run.retrying": (lambda d: f"\n[the worker stopped; retrying (attempt {d['attempt']})]", "yellow"),
    # A terminal cannot take text back: it says where the text that follows takes over.
    "run.continued": (
        lambda d: f"[the worker stopped; attempt {d['attempt']} goes on after event {d['from_event_id']}]",
        "yellow",
    ),
    "gap": (lambda d: f"\n[events before {d['first_available']} are gone: {d['reason']}]", "yellow"),
    "run.failed": (lambda d: f"\n[failed: {d['error']['message']}]", "red"),
    "run.cancelled": (lambda d: f"\n[cancelled: {d['reason']}]", "yellow"),
    "input.required": (lambda d: f"\n[the agent asks: {d['prompt']}]", "cyan"),
    "input.received": (lambda d: f"[answered: {d['answer']}]", None),
}
# The exit status a run's end sets: 0 once the last run completed.
_ENDINGS = {"run.completed": 0, "run.failed": 1, "run.cancelled": 1}
_ENDED = {"run.completed": "completed", "run.failed": "failed", "run.cancelled": "cancelled"}


@dataclass
class _Child:
    """A sub-agent run on screen: nested under its parent's tool call, its text held to whole lines."""

    parent: str
    depth: int  # 1: a child of a session's own run
    name: str
    text: str = ""  # its answer's last line, not printed yet
    open: bool = True  # closed: at its end, or at an ancestor's (its own end may come after)

    @property
    def bars(self) -> str:
        return "│ " * (self.depth - 1)


class Screen:
    """Prints a session's events as they come; remembers the name of each tool call it saw start.

    A sub-agent run (`run.spawned`) is a part of its own, nested under its parent's tool call, on
    stderr (the answer on stdout is the session's own runs'): it opens with `┌ <name> [<call id>]`, each
    of its lines starts with `│ <name> [<call id>]:` (children stream side by side: their lines
    interleave whole, each named; the call id tells two of one agent apart), and `└ <name> [<call id>]`
    closes it when it ends, or when an ancestor ends first (a cancel)."""

    def __init__(self) -> None:
        self._tools: dict[str, str] = {}  # call id -> tool name
        self._children: dict[str, _Child] = {}  # the sub-agent runs seen spawned, by run id
        self._mid_line = False  # the answer's last line on stdout is not ended yet

    def show(self, event: Event, status: int) -> int:
        """Print `event`; the exit status once it is shown (see _ENDINGS)."""
        data = event.data
        if event.event == "tool.started":
            self._tools[data["call_id"]] = data["name"]
        elif event.event in ("tool.completed", "tool.failed"):
            # A stream that started after the call began never saw its name: the call id says which.
            data = {**data, "name": self._tools.get(data["call_id"], data["call_id"])}
        if event.event == "run.spawned":
            self._spawned(data)
            return status
        if (child := self._children.get(data.get("run_id", ""))) is not None:
            self._show_child(child, event.event, data)
            return status
        if event.event == "message.delta":
            click.echo(data["text"], nl=False)
            self._mid_line = not data["text"].endswith("\n")
        elif event.event == "run.completed":
            click.echo()
            self._mid_line = False
        elif event.event in _PROGRESS:
            text, colour = _PROGRESS[event.event]
            click.secho(text(data), err=True, dim=colour is None, fg=colour, nl=event.event != "reasoning.delta")
        elif event.event.startswith("data."):
            click.secho(f"[{event.event}: {data['data']}]", err=True, dim=True)
        if event.event in _ENDINGS:
            self._close_below(data["run_id"], "ended with its parent")
        return _ENDINGS.get(event.event, status)

    def _spawned(self, data: dict[str, Any]) -> None:
        parent = self._children.get(data["parent_run_id"])
        # Named with its parent's call: two children of one agent (asked at once) are told apart.
        call_id = (data.get("cause") or {}).get("call_id")
        name = data["name"] or data["agent"]
        child = _Child(
            data["parent_run_id"], parent.depth + 1 if parent else 1, f"{name} [{call_id}]" if call_id else name
        )
        self._children[data["run_id"]] = child
        self._line(f"{child.bars}┌ {child.name} ({data['agent']}): {data['input']}", None)

    def _show_child(self, child: _Child, kind: str, data: dict[str, Any]) -> None:
        if not child.open:
            return
        if kind == "message.delta":
            child.text += data["text"]
            *lines, child.text = child.text.split("\n")
            for line in lines:
                self._line(f"{child.bars}│ {child.name}: {line}", None, dim=False)
            return
        if kind in _ENDED:
            outcome = _ENDED[kind]
            if kind == "run.failed":
                outcome += f": {data['error']['message']}"
            self._close(data["run_id"], outcome)
            return
        if kind in _PROGRESS and kind != "run.queued":
            text, colour = _PROGRESS[kind]
            self._line(f"{child.bars}│ {child.name}: {text(data).strip()}", colour)
        elif kind.startswith("data."):
            self._line(f"{child.bars}│ {child.name}: [{kind}: {data['data']}]", None)

    def _close(self, run_id: str, outcome: str) -> None:
        """End the child's part (its descendants' first, if any is still open)."""
        self._close_below(run_id, "ended with its parent")
        child = self._children[run_id]
        child.open = False
        if child.text:
            self._line(f"{child.bars}│ {child.name}: {child.text}", None, dim=False)
        colour = "yellow" if outcome != "completed" else None
        self._line(f"{child.bars}└ {child.name} {outcome}", colour)

    def _close_below(self, run_id: str, outcome: str) -> None:
        for below, child in self._children.items():
            if child.parent == run_id and child.open:
                self._close(below, outcome)

    def _line(self, text: str, colour: str | None, dim: bool = True) -> None:
        """A whole line on stderr, on a line of its own: a terminal shows both streams on one screen,
        so a line of the answer not ended yet is ended there (stdout keeps the answer as it is)."""
        if self._mid_line:
            click.echo(err=True)
            self._mid_line = False
        click.secho(text, err=True, dim=dim and colour is None, fg=colour)
