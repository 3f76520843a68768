"""The offline `scripted` model: deterministic text derived from the input, at a chosen pace.

Tests, demos and benchmarks shape the load with `params`: `tokens` (how many, at least: the answer
ends with its sentence), `tokens_per_second` (0 streams as fast as possible), `first_token_seconds`
(a wait before each answer, as a real model's time to first token) and `fail_at_token` (raise after
that many tokens, to exercise failure paths). The same input and params always give
the same text: a first sentence that answers the input, then sentences about how the stream works.
`due_stamps` makes each token the time it was due instead (ms since the epoch), so a benchmark times
delivery from when the model spoke, every hop counted (bench/systems.py).

It uses tools like a real model would (`plan_tool_calls`): offered the `calculator` and asked something
with arithmetic in it ("Please calculate 12 * (3 + 4).", "what is two plus two"), it calls the tool, once
for each piece of arithmetic ("What is 12 * 7 and 6 * 7?": two calls in one turn, as models call tools in parallel); a
follow-up that only names an operation ("and times two?") applies it to the last number of the
previous answer in the session. Offered another tool whose name the question mentions (`get_weather`:
"What is the weather in Paris?"), it calls it, with the arguments it needs taken from the question.
Given the results, it answers with them ("The calculator says 84.").
"""

import asyncio
import hashlib
import json
import math
import re
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

from tokentail.shared.vocabulary.catalog import SCRIPTED
from tokentail.worker.providers.base import Chunk, Message, ModelRequest, TextDelta, ToolCall, Usage
from tokentail.worker.tools import ToolSpec
from tokentail.worker.tools.builtin import is_arithmetic

_SENTENCES = (
    "This answer comes from the offline scripted model, so it works without a network or an API key.",
    "Each token is appended to a Redis stream that belongs to your session.",
    "The gateway tails that stream and sends every event to you with an id.",
    "If your connection drops, reconnect with the last id you saw and the stream continues right after it.",
    "Nothing is skipped and nothing is repeated, even if you land on another gateway replica.",
    "Workers can come and go while the answer keeps its place in the log.",
    "Tokens that arrive close together are sent as one delta, which saves work on every hop.",
    "The first token is never held back, so the answer starts as soon as the model speaks.",
    "A run ends with a completed, failed or cancelled event, and the stream closes after it.",
    "Ask again in the same session and the next run appends to the same stream.",
    "You can shape this reply with params: tokens sets its length and tokens_per_second its pace.",
    "Refresh the page halfway through and the text picks up where it was.",
)


DEFAULT_TOKENS = 150  # about 6 s at the default pace: time to reload the demo page halfway through
DEFAULT_TOKENS_PER_SECOND = 25.0
# The shortest wait between tokens: those due meanwhile come together, as a network stream delivers
# them, and the writer's flush window (50 ms by default) coalesces them anyway.
TICK = 0.05
STEP_TOKENS = 16  # the most tokens it yields in one loop step


class _Pacer:
    """When the runs of a process wake to speak: on a grid of `GRID` seconds, each wake at the first line
    of it at or after its time, one timer for all the runs that wake there (hundreds of paced runs
    would otherwise make a timer each, every TICK, which costs more than the wake itself)."""

    GRID = 0.001

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due: dict[int, list[asyncio.Future[None]]] = {}

    def until(self, when: float) -> "asyncio.Future[None]":
        line = math.ceil(when / self.GRID)
        waking = self._due.get(line)
        if waking is None:
            waking = self._due[line] = []
            self._loop.call_at(line * self.GRID, self._wake, line)
        waking.append(woken := self._loop.create_future())
        return woken

    def _wake(self, line: int) -> None:
        for woken in self._due.pop(line):
            if not woken.done():  # (its run was cancelled meanwhile)
                woken.set_result(None)


_pacers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pacer]" = weakref.WeakKeyDictionary()


def _pacer(loop: asyncio.AbstractEventLoop) -> _Pacer:
    if (pacer := _pacers.get(loop)) is None:
        pacer = _pacers[loop] = _Pacer(loop)
    return pacer


class ScriptedFailure(RuntimeError):
    pass


def scripted_tokens(text: str, count: int) -> list[str]:
    """At least `count` tokens (words, each after its space), ending where a sentence ends: one that
    answers `text`, then sentences from one chosen by `text`."""
    if count <= 0:
        return []
    first = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") % len(_SENTENCES)
    words = _opening(text).split()
    sentence = first
    while len(words) < count:
        words.extend(_SENTENCES[sentence % len(_SENTENCES)].split())
        sentence += 1
    return _tokens(words)


def _tokens(words: list[str]) -> list[str]:
    """Words as a model streams them: each after its space."""
    return [word if i == 0 else " " + word for i, word in enumerate(words)]


def _opening(text: str) -> str:
    question = " ".join(text.split())
    if _GREETING.fullmatch(question):
        return "Hello! This is tokentail's offline scripted model, streaming to you through a Redis stream."
    if len(question) > 80:
        question = question[:79].rstrip() + "…"
    return f'You asked: "{question}". I am the offline scripted model, so I cannot answer that for real.'


_GREETING = re.compile(r"(?i)(hello|hi|hey|good (morning|afternoon|evening))\b[\s!.,?]*(there|tokentail)?[\s!.?]*")


# A stretch of text made only of what arithmetic is written with; `find_arithmetic` trims it to an
# expression (a sentence's final period is not a decimal point) and asks the calculator's parser.
_ARITHMETIC_CHARACTERS = re.compile(r"[\d\s.()+\-*/%^]+")
_OPERATION = re.compile(r"(?:^|\s)([-+*/%^])\s*(\d+(?:\.\d+)?)")  # " * 2": an operation, no left operand
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_DIGIT = re.compile(r"\d")  # a stretch without one is no arithmetic (most are spaces between words)
# Arithmetic spelled out in words, and how it is written with digits and operators.
_SPELLED = {
    "multiplied by": "*",
    "times": "*",
    "divided by": "/",
    "over": "/",
    "plus": "+",
    "minus": "-",
    **{
        word: str(value)
        for value, word in enumerate(
            "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
            "sixteen seventeen eighteen nineteen twenty".split()
        )
    },
}
_SPELLED_WORD = re.compile(rf"(?i)\b(?:{'|'.join(_SPELLED)})\b")  # one pass over the text, not one per word
_TIMES_SIGN = re.compile(r"(?<=\d)\s*[x×]\s*(?=\d)")


def _symbols(text: str) -> str:
    """`text` with the arithmetic it spells out in words (or with x and ÷) written with digits and operators."""
    text = _SPELLED_WORD.sub(lambda match: _SPELLED[match.group().lower()], text)
    return _TIMES_SIGN.sub(" * ", text).replace("÷", "/")


def _trimmed(stretch: str) -> str:
    """The expression in a stretch of arithmetic characters cut from a sentence: without the dots that
    end a sentence rather than start a decimal ("7*6." is 7*6), the parentheses the sentence opened or
    closed around it, and an operator left dangling at either end."""
    text = re.sub(r"\.(?!\d)", "", stretch)
    unmatched: set[int] = set()
    opened: list[int] = []
    for i, char in enumerate(text):
        if char == "(":
            opened.append(i)
        elif char == ")":
            if opened:
                opened.pop()
            else:
                unmatched.add(i)
    unmatched.update(opened)
    text = "".join(char for i, char in enumerate(text) if i not in unmatched)
    return text.strip().lstrip("*/%^").rstrip("+-*/%^ ").strip()


def find_arithmetic(text: str, previous_answer: str | None = None) -> list[str]:
    """The stretches of `text` that are arithmetic on numbers as the calculator takes it, each once, in
    order: `12 * (3 + 4)` in "Please calculate 12 * (3 + 4)."; `12 * 7` and `6 * 7` in "What is 12 * 7
    and 6 * 7?" (a model calls a tool once for each, in one turn). Or, for a follow-up that only names
    an operation ("and times two?"), that operation applied to the last number of `previous_answer`."""
    symbolic = _symbols(text)
    found: list[str] = []
    for match in _ARITHMETIC_CHARACTERS.finditer(symbolic):
        stretch = match.group()
        if _DIGIT.search(stretch) and is_arithmetic(candidate := _trimmed(stretch)) and candidate not in found:
            found.append(candidate)
    if found:
        return found
    operation = _OPERATION.search(symbolic)
    numbers = _NUMBER.findall(previous_answer or "")
    if operation is not None and numbers:
        return [f"{numbers[-1]} {operation.group(1)} {operation.group(2)}"]
    return []


# Words of a tool's name that say nothing of what it is about ("get_weather" is about the weather).
_VAGUE = frozenset(
    "get set list find fetch lookup look search query current do run make create call tool tools plugin "
    "function func api by for the of a an to from and or".split()
)


def _topics(name: str) -> set[str]:
    """What a tool's name is about: its words (snake, kebab or camel case), but the vague ones."""
    words = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", name)
    return {word.lower() for word in words if len(word) >= 3 and word.lower() not in _VAGUE}


def _mentions(text: str, tool: ToolSpec) -> bool:
    said = set(re.findall(r"[a-z0-9]+", text.lower()))
    return any(topic in said or f"{topic}s" in said for topic in _topics(tool.name))


# A name in a sentence: capitalised words in a row ("Paris", "New York").
_NAME = re.compile(r"[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*")


def _name_in(text: str) -> str:
    """The last name in `text` (its first word aside, which a sentence capitalises anyway); else its
    last word; else all of it."""
    first_word = re.match(r"\s*\S+", text)
    names = [match.group() for match in _NAME.finditer(text, first_word.end() if first_word else 0)]
    if names:
        return names[-1]
    words = re.findall(r"[\w'-]+", text)
    return words[-1] if words else text.strip()


def _argument(text: str, schema: dict[str, Any]) -> Any:
    """A value for one argument, taken from the question as well as a script can."""
    kind = schema.get("type")
    if schema.get("enum"):
        return schema["enum"][0]
    if kind in ("integer", "number"):
        numbers = _NUMBER.findall(text)
        value = float(numbers[0]) if numbers else 0.0
        return int(value) if kind == "integer" or value.is_integer() else value
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return _name_in(text)


def _call(name: str, arguments: dict[str, Any]) -> ToolCall:
    """A call with an id made from what it asks: the same request calls with the same id."""
    digest = hashlib.sha256(json.dumps([name, arguments], sort_keys=True).encode()).hexdigest()
    return ToolCall(f"call_{digest[:10]}", name, arguments)


def plan_tool_calls(request: ModelRequest) -> list[ToolCall]:
    """The tools the scripted model calls for the request's last message, in one turn: the
    `calculator` once for each piece of arithmetic in it; else the first tool offered whose name's
    words it mentions (`get_weather` for "What is the weather in Paris?"), each required argument
    filled from the message (a string with the last name in it, "Paris"; a number with its first number)."""
    last = request.messages[-1]
    if last.role != "user":
        return []
    previous = next((m.content for m in reversed(request.messages[:-1]) if m.role == "assistant"), None)
    if any(tool.name == "calculator" for tool in request.tools):
        if expressions := find_arithmetic(last.content, previous):
            return [
                ToolCall(
                    "call_" + hashlib.sha256(expression.encode()).hexdigest()[:10],
                    "calculator",
                    {"expression": expression},
                )
                for expression in expressions
            ]
    for tool in request.tools:
        if tool.name != "calculator" and _mentions(last.content, tool):
            properties = tool.parameters.get("properties") or {}
            required = tool.parameters.get("required") or []
            # What to ask an agent called as a tool (worker/run/agent_loop.py `child_spec`): the whole request.
            arguments = {
                key: last.content if key == "input" else _argument(last.content, properties.get(key) or {})
                for key in required
            }
            return [_call(tool.name, arguments)]
    return []


def _answer_tokens(messages: list[Message]) -> list[str]:
    """After tool results: say what they were."""
    called = {call.call_id: call.name for message in messages for call in message.tool_calls}
    sentences = []
    for message in reversed(messages):
        if message.role != "tool":
            break
        name = called.get(message.call_id or "", "")
        said = message.content.removeprefix("error: ")  # how the agent loop tells a model a tool failed
        if name == "calculator":
            sentences.append(
                f"The calculator could not work that out: {said}."
                if message.is_error
                else f"The calculator says {said}."
            )
        else:
            tool = f"The {name} tool" if name else "The tool"
            sentences.append(f"{tool} failed: {said}." if message.is_error else f"{tool} says {said}.")
    return _tokens(" ".join(reversed(sentences)).split())


def _after(text: str, tokens: list[str]) -> tuple[str, list[str]]:
    """What follows `text` in `tokens`: the rest of the token it ends in, and the tokens after it."""
    chars = 0
    for index, token in enumerate(tokens):
        if chars + len(token) > len(text):
            return token[len(text) - chars :], tokens[index + 1 :]
        chars += len(token)
    return "", []


def _due_stamps(count: int, pace: float) -> list[str]:
    """`count` tokens, each the wall-clock time it is due at `pace` from now, in ms: what a benchmark
    subtracts from the time it received the token. (Not continued after a takeover: the stamps
    of another attempt differ, so its text starts again.)"""
    now_ms = time.time() * 1000
    step_ms = 1000 / pace if pace else 0.0
    return [f"{now_ms + i * step_ms:.1f} " for i in range(count)]


def _due_end(first: int, count: int, start: float, pace: float, now: float) -> int:
    """Where a chunk from token `first` ends: after the tokens due by `now` (all, unpaced), up to STEP_TOKENS."""
    end = first + 1
    while end < count and end - first < STEP_TOKENS and (not pace or start + end / pace <= now):
        end += 1
    return end


def _calling(request: ModelRequest, calls: list[ToolCall]) -> list[Chunk]:
    """A turn that calls tools: the calculator's lead-in (the rest of it, when the turn goes on from
    text clients have), the calls, the usage."""
    lead = _after(request.continue_text, ["Let me calculate that. "])[0] if calls[0].name == "calculator" else ""
    usage = Usage(len(request.messages[-1].content.split()), 4, ("tool_calls",))
    return [*([TextDelta(lead)] if lead else []), *calls, usage]


class ScriptedProvider:
    provider = SCRIPTED
    continues = True  # it is deterministic: the same request gives the same text, so it goes on exactly

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        params = request.params  # the sampling knobs do not apply: the text is scripted
        count = DEFAULT_TOKENS if params.tokens is None else params.tokens
        pace = DEFAULT_TOKENS_PER_SECOND if params.tokens_per_second is None else params.tokens_per_second
        last = request.messages[-1]
        if params.first_token_seconds:
            await asyncio.sleep(params.first_token_seconds)
        if last.role == "tool":
            tokens = _answer_tokens(request.messages)
        elif calls := plan_tool_calls(request):
            for chunk in _calling(request, calls):
                yield chunk
            return
        else:
            tokens = scripted_tokens(last.content, count)
        if request.continue_text:
            rest, tokens = _after(request.continue_text, tokens)
            if rest:
                yield TextDelta(rest)
        if params.due_stamps:
            tokens = _due_stamps(len(tokens), pace)
        async for chunk in _paced(tokens, pace, params.fail_at_token):
            yield chunk
        yield Usage(len(last.content.split()), len(tokens), ("stop",))


async def _paced(tokens: list[str], pace: float, fail_at: int | None) -> AsyncIterator[TextDelta]:
    """`tokens` at `pace` a second (0: at once), in chunks: the tokens already due come together."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    i = 0
    while i < len(tokens):
        # Paced against the start time, so timer drift does not add up; the tokens already due come
        # without a wake each (a fast pace costs one wake per TICK, not one per token, and the runs
        # that wake at once share one timer: `_Pacer`), as one chunk, up to STEP_TOKENS of them, as
        # one network read brings them: the agent's chain handles a chunk, not each token of it. Then
        # it yields to the loop, as a network stream would (unpaced, or behind its pace, it never sleeps).
        delay = start + i / pace - loop.time() if pace else 0.0
        if delay > 0:
            await _pacer(loop).until(loop.time() + max(delay, TICK))
        elif i:
            await asyncio.sleep(0)
        end = _due_end(i, len(tokens), start, pace, loop.time())
        failing = fail_at is not None and i <= fail_at < end
        if failing:
            end = fail_at  # type: ignore[assignment]  # (not None: failing)
        if end > i:
            yield TextDelta("".join(tokens[i:end]))
        if failing:
            raise ScriptedFailure(f"scripted failure at token {end}, as asked by params.fail_at_token")
        i = end
