import asyncio

import pytest

from worker.providers.base import InvalidRequest, ModelRequest, TextDelta, Usage
from worker.providers.scripted import ScriptedFailure, ScriptedProvider, scripted_tokens


async def _collect(**params: object) -> list[object]:
    request = ModelRequest(model="", input="hello", params=dict(params))
    return [chunk async for chunk in ScriptedProvider().stream(request)]


def test_tokens_are_deterministic_per_input_and_sized_by_count() -> None:
    assert scripted_tokens("hello", 50) == scripted_tokens("hello", 50)
    assert scripted_tokens("hello", 50) != scripted_tokens("something else entirely", 50)
    assert len(scripted_tokens("hello", 1234)) == 1234
    assert scripted_tokens("hello", 0) == []
    assert all(token.startswith(" ") for token in scripted_tokens("hello", 20)[1:])


async def test_stream_yields_the_tokens_then_usage() -> None:
    chunks = await _collect(tokens=30, tokens_per_second=0)
    assert [c.text for c in chunks[:-1] if isinstance(c, TextDelta)] == scripted_tokens("hello", 30)
    assert chunks[-1] == Usage(input_tokens=1, output_tokens=30)


async def test_fail_at_token_raises_after_that_many_tokens() -> None:
    request = ModelRequest(model="", input="hello", params={"tokens": 10, "tokens_per_second": 0, "fail_at_token": 4})
    seen = []
    with pytest.raises(ScriptedFailure, match="token 4"):
        async for chunk in ScriptedProvider().stream(request):
            seen.append(chunk)
    assert len(seen) == 4


@pytest.mark.parametrize("params", [{"tokens": -1}, {"tokens_per_second": "fast"}, {"tokens": 10**9}])
async def test_bad_params_are_an_invalid_request(params: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest, match="scripted"):
        await _collect(**params)


async def test_paced_stream_takes_about_tokens_over_rate() -> None:
    # Functional check of pacing (not a performance target): 10 tokens at 100/s cannot finish at once.
    loop = asyncio.get_running_loop()
    start = loop.time()
    await _collect(tokens=10, tokens_per_second=100)
    assert loop.time() - start >= 0.08
