"""worker/run/traces.py: the spans of model calls in each provider, and what an attempt's span says of the
attempt before it, exported in memory."""

from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.servers.fake_llm import FakeLLM, Reply, anthropic_stream, openai_stream
from tokentail.shared.plumbing import run_spans, tracing
from tokentail.shared.vocabulary.params import RunParams
from tokentail.shared.vocabulary.records import Question, RunRecord
from tokentail.worker.providers.anthropic_messages import AnthropicProvider
from tokentail.worker.providers.base import Message, ModelRequest, Provider, ProviderError
from tokentail.worker.providers.openai_chat import OpenAIProvider
from tokentail.worker.providers.scripted import ScriptedProvider
from tokentail.worker.run import traces

REQUEST = ModelRequest("m", [Message("user", "hi")])


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def _drain(provider: Provider, request: ModelRequest = REQUEST) -> None:
    async for _ in traces.chat(provider, request):  # the one seam every provider's calls go through
        pass


@pytest.mark.parametrize(
    ("name", "provider", "finish"),
    [
        ("openai", lambda: OpenAIProvider(FakeLLM([Reply(chunks=openai_stream(["Hi"]))]).openai()), "stop"),
        (
            "anthropic",
            lambda: AnthropicProvider(FakeLLM([Reply(chunks=anthropic_stream(["Hi"]))]).anthropic()),
            "end_turn",
        ),
        ("scripted", ScriptedProvider, "stop"),
    ],
)
async def test_each_provider_makes_a_client_chat_span_with_its_usage(
    exported: InMemorySpanExporter, name: str, provider: Any, finish: str
) -> None:
    scripted = name == "scripted"
    unpaced = RunParams(tokens=3, tokens_per_second=0) if scripted else RunParams()
    await _drain(provider(), ModelRequest("" if scripted else "m", [Message("user", "hi")], params=unpaced))
    (span,) = exported.get_finished_spans()
    model = "scripted" if scripted else "m"
    assert span.name == f"chat {model}" and span.kind.name == "CLIENT"
    attributes = _attrs(span)
    assert attributes["gen_ai.operation.name"] == "chat" and attributes["gen_ai.provider.name"] == name
    assert attributes["gen_ai.request.model"] == model and attributes["gen_ai.usage.output_tokens"] > 0
    assert attributes["gen_ai.response.finish_reasons"] == (finish,)
    assert "error.type" not in attributes


async def test_a_model_call_that_fails_or_is_closed_early_ends_its_span_with_the_error(
    exported: InMemorySpanExporter,
) -> None:
    with pytest.raises(ProviderError):
        await _drain(OpenAIProvider(FakeLLM([Reply(status=429)]).openai()))
    stream = traces.chat(
        ScriptedProvider(), ModelRequest("", [Message("user", "hi")], params=RunParams(tokens_per_second=0))
    )
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]  # the run was cancelled: the agent loop closes the model's stream
    failed, closed = exported.get_finished_spans()
    assert _attrs(failed)["error.type"] == "rate_limited" and failed.status.status_code.name == "ERROR"
    assert _attrs(closed)["error.type"] == "cancelled"


def test_with_traces_off_a_provider_makes_no_span() -> None:
    assert not tracing.ON
    stream = traces.chat(ScriptedProvider(), REQUEST)
    assert stream.ag_code.co_name == "stream"  # type: ignore[attr-defined]  # the provider's own, unwrapped


def test_a_resumed_attempt_links_the_attempt_that_asked_and_shows_the_wait(exported: InMemorySpanExporter) -> None:
    question = Question(input_id="in_1", kind="text", prompt="?", answer_schema={"type": "string"}, asked_at=100.0)
    run = RunRecord(
        run_id="r_1", input="x", attempt=2, resumes=1, started_as="resume", started_at=130.5, asked=[question]
    )
    attempt = traces.AttemptSpan(run, "s_1")
    attempt.end("completed")
    (span,) = exported.get_finished_spans()
    run_trace = run_spans.RunTrace.of(run)
    assert span.context.span_id == run_trace.attempt_span_id(2, 1)
    assert span.name == "attempt 2 resume 1"  # after the first answer
    assert span.parent is not None and span.parent.span_id == run_trace.run_span_id
    assert [link.context.span_id for link in span.links] == [run_trace.attempt_span_id(2, 0)]
    assert _attrs(span)["tokentail.answer_wait_s"] == 30.5 and _attrs(span)["tokentail.input.id"] == "in_1"
    assert span.start_time == 130_500_000_000  # when the resume started, by Redis's clock
