import asyncio
import json
import math
import time

import pytest

from tokentail.shared.vocabulary.params import RunParams
from tokentail.worker.agent_errors import ToolError
from tokentail.worker.providers.base import Message, ModelRequest, TextDelta, ToolCall, Usage
from tokentail.worker.providers.scripted import (
    STEP_TOKENS,
    ScriptedFailure,
    ScriptedProvider,
    _pacer,
    find_arithmetic,
    plan_tool_calls,
    scripted_tokens,
)
from tokentail.worker.tools import ToolSpec
from tokentail.worker.tools.builtin import calculator

CALCULATOR = ToolSpec("calculator", "arithmetic", {"type": "object"})


def _request(text: str = "hello", tools: list[ToolSpec] | None = None, **params: object) -> ModelRequest:
    knobs = RunParams.model_validate(params)
    return ModelRequest(model="", messages=[Message("user", text)], tools=tools or [], params=knobs)


async def _collect(request: ModelRequest) -> list[object]:
    return [chunk async for chunk in ScriptedProvider().stream(request)]


def test_tokens_are_deterministic_per_input_and_end_with_a_sentence_past_count() -> None:
    assert scripted_tokens("hello", 50) == scripted_tokens("hello", 50)
    assert scripted_tokens("hello", 50) != scripted_tokens("something else entirely", 50)
    for count in (1, 7, 50, 1234):
        tokens = scripted_tokens("what is a stream?", count)
        assert count <= len(tokens) < count + 25 and tokens[-1].endswith((".", "!", "?"))
    assert scripted_tokens("hello", 0) == []
    assert all(token.startswith(" ") for token in scripted_tokens("hello", 20)[1:])


def test_the_first_sentence_answers_the_input() -> None:
    assert "".join(scripted_tokens("hello", 1)).startswith("Hello!")
    assert "".join(scripted_tokens("What is the capital of France?", 1)).startswith(
        'You asked: "What is the capital of France?".'
    )


async def test_stream_yields_the_tokens_then_usage() -> None:
    chunks = await _collect(_request(tokens=30, tokens_per_second=0))
    texts = [c.text for c in chunks[:-1] if isinstance(c, TextDelta)]
    tokens = scripted_tokens("hello", 30)
    assert "".join(texts) == "".join(tokens)
    # Unpaced, every token is due: they come STEP_TOKENS to a chunk, as network reads bring them.
    assert [len(text.split()) for text in texts] == [STEP_TOKENS, len(tokens) - STEP_TOKENS]
    assert chunks[-1] == Usage(input_tokens=1, output_tokens=len(tokens))


async def test_fail_at_token_raises_after_that_many_tokens() -> None:
    seen = []
    with pytest.raises(ScriptedFailure, match="token 4"):
        async for chunk in ScriptedProvider().stream(_request(tokens=10, tokens_per_second=0, fail_at_token=4)):
            seen.append(chunk)
    said = "".join(chunk.text for chunk in seen if isinstance(chunk, TextDelta))
    assert said == "".join(scripted_tokens("hello", 10)[:4])


async def test_the_tokens_due_together_come_in_one_chunk_in_one_loop_step() -> None:
    # As one network read brings them, up to STEP_TOKENS: a writer's flush tick between two of them
    # took the first alone and held the rest a whole window (the benchmark's p99 delay at 100 streams
    # was 66 ms), and the agent's chain handles a chunk, not each token. So a loop step's chunk ends
    # full or where the next token was not yet due, whatever the box's speed (each token is its due
    # time; the step is counted by a callback that runs once per loop iteration).
    loop = asyncio.get_running_loop()
    step = [0]

    def count_steps() -> None:
        step[0] += 1
        ticking[0] = loop.call_soon(count_steps)

    ticking = [loop.call_soon(count_steps)]
    steps: dict[int, list[tuple[float, float]]] = {}  # per step: each token's due and arrival, ms
    try:
        request = _request(tokens=200, tokens_per_second=1000, due_stamps=True)
        async for chunk in ScriptedProvider().stream(request):
            if isinstance(chunk, TextDelta):
                assert step[0] not in steps  # one chunk a step
                steps[step[0]] = [(float(due), time.time() * 1000) for due in chunk.text.split()]
    finally:
        ticking[0].cancel()
    ordered = list(steps.values())
    assert len(ordered) > 2
    assert all(len(chunk) <= STEP_TOKENS for chunk in ordered)
    # A cut where the next token was already due: the bug made one at every other chunk. A loaded machine
    # may also pause this process between the provider's cut and the arrival's clock reading (22 ms once,
    # under CI's load), so a few are let be; the bug's share is not.
    early = [
        (len(this), round(after[0][0] - this[-1][1], 1))
        for this, after in zip(ordered, ordered[1:], strict=False)
        if len(this) < STEP_TOKENS and after[0][0] <= this[-1][1] - 1
    ]
    assert len(early) <= (len(ordered) - 1) // 5, early


async def test_sampling_knobs_change_nothing_of_the_scripted_text() -> None:
    # So that a run can switch between a real model and the offline one with the same params.
    plain = await _collect(_request(tokens=8, tokens_per_second=0))
    assert await _collect(_request(tokens=8, tokens_per_second=0, temperature=0.2, stop=["x"], seed=1)) == plain


async def test_due_stamps_make_each_token_the_time_it_was_due() -> None:
    # What the benchmark times delivery from: token i is due i / pace after the first, each no later
    # than it came (the model never speaks early), as many as the text would have.
    before = time.time() * 1000
    chunks = await _collect(_request(tokens=5, tokens_per_second=100, due_stamps=True))
    texts = [c.text for c in chunks if isinstance(c, TextDelta)]
    stamps = [float(token) for text in texts for token in text.split()]
    assert len(stamps) == len(scripted_tokens("hello", 5))
    assert all(text.endswith(" ") for text in texts)
    assert before - 0.05 <= stamps[0] <= time.time() * 1000 + 0.05  # written to a tenth of a ms, rounded
    assert [round(b - a, 1) for a, b in zip(stamps, stamps[1:], strict=False)] == [10.0] * (len(stamps) - 1)


async def test_paced_stream_takes_about_tokens_over_rate() -> None:
    # Functional check of pacing (not a performance target): 10 tokens at 100/s cannot finish at once.
    loop = asyncio.get_running_loop()
    start = loop.time()
    await _collect(_request(tokens=10, tokens_per_second=100))
    assert loop.time() - start >= 0.08


@pytest.mark.parametrize(
    ("text", "expression"),
    [
        ("what is 12 * (3 + 4)?", ["12 * (3 + 4)"]),
        ("calculate 2+2", ["2+2"]),
        ("what is two plus three times four", ["2 + 3 * 4"]),
        ("What is 12 * 7 and 6*7? And 12 * 7 again?", ["12 * 7", "6*7"]),
        ("hello", []),
        ("I have 3 cats", []),
    ],
)
def test_arithmetic_is_found_in_questions(text: str, expression: list[str]) -> None:
    assert find_arithmetic(text) == expression


@pytest.mark.parametrize(
    ("text", "expression"),
    [("and times two?", ["84 * 2"]), ("minus 4", ["84 - 4"]), ("what about step-2?", []), ("thanks!", [])],
)
def test_a_follow_up_operation_applies_to_the_last_number_of_the_previous_answer(
    text: str, expression: list[str]
) -> None:
    assert find_arithmetic(text, "Let me calculate that. The calculator says 84.") == expression


async def test_offered_a_calculator_it_calls_it_then_answers_with_the_result() -> None:
    chunks = await _collect(_request("what is 6 * 7?", tools=[CALCULATOR], tokens=12, tokens_per_second=0))
    calls = [c for c in chunks if isinstance(c, ToolCall)]
    assert len(calls) == 1 and calls[0].name == "calculator" and calls[0].arguments == {"expression": "6 * 7"}
    follow_up = ModelRequest(
        model="",
        messages=[
            Message("user", "what is 6 * 7?"),
            Message("assistant", "Let me calculate that.", tool_calls=(calls[0],)),
            Message("tool", "42", call_id=calls[0].call_id),
        ],
        tools=[CALCULATOR],
        params=RunParams(tokens=12, tokens_per_second=0),
    )
    text = "".join(c.text for c in await _collect(follow_up) if isinstance(c, TextDelta))
    assert text.startswith("The calculator says 42.")
    assert text == "The calculator says 42."  # and nothing unrelated after it


async def test_two_pieces_of_arithmetic_are_two_calls_in_one_turn_answered_together() -> None:
    chunks = await _collect(_request("What is 12 * 7 and 6 * 7?", tools=[CALCULATOR], tokens_per_second=0))
    calls = [c for c in chunks if isinstance(c, ToolCall)]
    assert [call.arguments for call in calls] == [{"expression": "12 * 7"}, {"expression": "6 * 7"}]
    assert calls[0].call_id != calls[1].call_id
    answered = ModelRequest(
        model="",
        messages=[
            Message("user", "What is 12 * 7 and 6 * 7?"),
            Message("assistant", "Let me calculate that.", tool_calls=tuple(calls)),
            Message("tool", "84", call_id=calls[0].call_id),
            Message("tool", "42", call_id=calls[1].call_id),
        ],
        tools=[CALCULATOR],
        params=RunParams(tokens_per_second=0),
    )
    text = "".join(c.text for c in await _collect(answered) if isinstance(c, TextDelta))
    assert text == "The calculator says 84. The calculator says 42."


async def test_without_the_tool_offered_it_just_answers() -> None:
    chunks = await _collect(_request("what is 6 * 7?", tokens=5, tokens_per_second=0))
    assert not any(isinstance(c, ToolCall) for c in chunks)


async def test_paced_tokens_come_at_the_first_at_once_then_together_per_tick() -> None:
    # One timer per tick (50 ms), not one per token: the tokens due meanwhile come together, at the
    # same average pace and with the same text; the first one does not wait.
    loop = asyncio.get_running_loop()
    start = loop.time()
    chunks: list[tuple[float, str]] = []
    async for chunk in ScriptedProvider().stream(_request(tokens=20, tokens_per_second=100)):
        if isinstance(chunk, TextDelta):
            chunks.append((loop.time() - start, chunk.text))
    assert "".join(text for _, text in chunks) == "".join(scripted_tokens("hello", 20))
    assert chunks[0][0] < 0.01 and chunks[0][1] == "Hello!"  # the first token alone, at once
    arrivals = [(at, token) for at, text in chunks for token in text.split(" ") if token]
    span = (len(arrivals) - 1) / 100  # of tokens at 100/s: one wake-up (one chunk) per 50 ms tick after the first
    assert len(chunks) <= 1 + math.ceil(span / 0.05)
    for i, (at, _) in enumerate(arrivals):
        assert i / 100 <= at + 0.001 <= i / 100 + 0.1  # never early, never more than a tick (and slack) late


async def _ask_the_calculator(sentence: str) -> str:
    """What the offline model answers `sentence` with the built-in calculator offered: it calls the
    tool (run here as the agent loop runs it), then answers with what the tool said."""
    request = _request(sentence, tools=[CALCULATOR], tokens=1, tokens_per_second=0)
    chunks = await _collect(request)
    calls = [c for c in chunks if isinstance(c, ToolCall)]
    if not calls:
        return "".join(c.text for c in chunks if isinstance(c, TextDelta))
    (call,) = calls
    try:
        result, failed = json.dumps(await calculator.run(call.arguments, 1)), False
    except ToolError as exc:
        result, failed = f"error: {exc}", True  # what the agent loop tells the model
    follow_up = ModelRequest(
        model="",
        messages=[
            *request.messages,
            Message("assistant", "Let me calculate that.", tool_calls=(call,)),
            Message("tool", result, call_id=call.call_id, is_error=failed),
        ],
        tools=[CALCULATOR],
        params=request.params,
    )
    return "".join(c.text for c in await _collect(follow_up) if isinstance(c, TextDelta))


@pytest.mark.parametrize(
    ("sentence", "answer"),
    [
        ("Please calculate 12 * (3 + 4).", "The calculator says 84."),  # the sentence's period is not the expression's
        ("Compute 7*6.", "The calculator says 42."),  # not 42.0: "6." is the sentence's end, not a float
        ("what's 2+2?", "The calculator says 4."),
        ("What is two plus two?", "The calculator says 4."),
        ("calculate 1/3", "The calculator says 0.333333333333."),
        ("what is 0.1 + 0.2?", "The calculator says 0.3."),  # no floating-point noise
        ("what is 8 / 2?", "The calculator says 4."),  # a whole number prints as one
        ("2^10", "The calculator says 1024."),
        ("What is 1.5 * 2.25?", "The calculator says 3.375."),
        ("what is -3 + 5?", "The calculator says 2."),
        ("(2 + 3) * 4, please!", "The calculator says 20."),
        ("How much is 3 x 4?", "The calculator says 12."),
        ("What is 1/0?", "The calculator could not work that out: division by zero."),
    ],
)
async def test_natural_sentences_with_arithmetic_get_the_calculator_s_answer(sentence: str, answer: str) -> None:
    assert await _ask_the_calculator(sentence) == answer


@pytest.mark.parametrize("sentence", ["Tell me about streams.", "I have 3 cats.", "Meet me on 2024-01-05.", "step-2"])
async def test_a_sentence_with_no_arithmetic_gets_no_tool_call(sentence: str) -> None:
    assert (await _ask_the_calculator(sentence)).startswith(f'You asked: "{sentence}"')


WEATHER = ToolSpec(
    "get_weather",
    "The current weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.mark.parametrize(
    ("question", "tools", "call"),
    [
        ("What is the weather in Paris?", [WEATHER], ("get_weather", {"city": "Paris"})),
        ("  Weather in New York, please", [WEATHER], ("get_weather", {"city": "New York"})),
        ("weather in rome", [WEATHER], ("get_weather", {"city": "rome"})),  # no name: its last word
        ("Any weather today?", [CALCULATOR, WEATHER], ("get_weather", {"city": "today"})),
        ("what is 2 + 2?", [CALCULATOR, WEATHER], ("calculator", {"expression": "2 + 2"})),
        ("Tell me about Paris.", [WEATHER], None),  # no tool's topic mentioned
        # Semantic Kernel names a plugin's function <plugin>-<function>; numbers from the question.
        (
            "Get the forecast for 3 days",
            [
                ToolSpec(
                    "WeatherPlugin-get_forecast",
                    "",
                    {"properties": {"days": {"type": "integer"}}, "required": ["days"]},
                )
            ],
            ("WeatherPlugin-get_forecast", {"days": 3}),
        ),
        ("What time is it?", [ToolSpec("current_time", "", {"properties": {}, "required": []})], ("current_time", {})),
    ],
)
def test_a_tool_the_question_mentions_is_called_with_arguments_from_it(
    question: str, tools: list[ToolSpec], call: tuple[str, dict[str, object]] | None
) -> None:
    request = ModelRequest(model="", messages=[Message("user", question)], tools=tools)
    planned = plan_tool_calls(request)
    assert [(each.name, each.arguments) for each in planned] == ([] if call is None else [call])
    # the same request, the same call id: a takeover calls it again alike
    assert planned == plan_tool_calls(request) and all(each.call_id.startswith("call_") for each in planned)


async def test_given_a_tool_s_result_it_answers_with_it() -> None:
    question = Message("user", "What is the weather in Paris?")
    [call] = plan_tool_calls(ModelRequest(model="", messages=[question], tools=[WEATHER]))
    messages = [
        question,
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", '{"sky": "sunny"}', call_id=call.call_id),
    ]
    text = "".join(c.text for c in await _collect(ModelRequest("", messages, [WEATHER])) if isinstance(c, TextDelta))
    assert text == 'The get_weather tool says {"sky": "sunny"}.'
    failed = [*messages[:2], Message("tool", "error: service down", call_id=call.call_id, is_error=True)]
    text = "".join(c.text for c in await _collect(ModelRequest("", failed, [WEATHER])) if isinstance(c, TextDelta))
    assert text == "The get_weather tool failed: service down."


async def test_paced_runs_that_wake_at_one_moment_share_one_timer_and_a_cancelled_one_wakes_none() -> None:
    loop = asyncio.get_running_loop()
    timers: list[float] = []
    call_at = loop.call_at

    def counted(when: float, *args: object) -> asyncio.TimerHandle:
        timers.append(when)
        return call_at(when, *args)  # type: ignore[arg-type]

    loop.call_at = counted  # type: ignore[method-assign,assignment]
    try:
        pacer = _pacer(loop)
        at = (math.floor(loop.time() / pacer.GRID) + 20.5) * pacer.GRID  # mid-way between two lines, 20 ms on
        woken = [pacer.until(at + offset) for offset in (0.0, 0.0001, 0.0002)]  # all before the next line
        cancelled = woken.pop()
        cancelled.cancel()
        await asyncio.gather(*woken)
    finally:
        loop.call_at = call_at  # type: ignore[method-assign]
    assert len(timers) == 1 and timers[0] >= at
