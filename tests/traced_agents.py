"""An agent whose module turns on the official OpenAI instrumentation, as its users would: the spans
it makes for each SDK call nest under tokentail's `chat` span, under the run's attempt."""

from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor

from tokentail import Agent
from tokentail.worker.tools.builtin import current_time  # the built-in tool the fake model calls

OpenAIInstrumentor().instrument()

CLOCK = Agent(name="clock", tools=(current_time,), model="openai:gpt-test")
