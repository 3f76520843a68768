"""Agents whose module turns on the official OpenAI and Anthropic instrumentations, as their users would:
the spans they make for each SDK call nest under tokentail's `chat` span, under the run's attempt."""

from opentelemetry.instrumentation.genai.anthropic import AnthropicInstrumentor
from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor

from tokentail import Agent
from tokentail.worker.tools.builtin import current_time  # the built-in tool the fake model calls

OpenAIInstrumentor().instrument()
AnthropicInstrumentor().instrument()

CLOCK = Agent(name="clock", tools=(current_time,), model="openai:gpt-test")
CLOCK_CLAUDE = Agent(name="clock_claude", tools=(current_time,), model="anthropic:claude-test")
