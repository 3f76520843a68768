"""Semantic Kernel weather agents, streamed by tokentail: the tutorials' ChatCompletionAgent with a
plugin (`weather`), and a chat service asked directly with auto function calling (`weather_chat`),
each wrapped in one line.

    .venv/bin/pip install -e '.[semantic-kernel]'
    TOKENTAIL_AGENTS='{"weather": "examples.semantic_kernel_agent:weather"}' \\
        .venv/bin/tokentail dev --offline
    .venv/bin/tokentail chat --agent weather "What is the weather in Paris?"

`--offline`: on the offline model, served to the workers as an OpenAI API (no key, no network). On
OpenAI: OPENAI_API_KEY, and no `--offline`; `OPENAI_BASE_URL` points it at any server with the
OpenAI chat API; TOKENTAIL_EXAMPLE_MODEL names the model (gpt-4o-mini).
"""

import os
from typing import Annotated

from openai import AsyncOpenAI
from semantic_kernel import Kernel
from semantic_kernel.agents import ChatCompletionAgent
from semantic_kernel.connectors.ai import FunctionChoiceBehavior
from semantic_kernel.connectors.ai.open_ai import OpenAIChatCompletion, OpenAIChatPromptExecutionSettings
from semantic_kernel.functions import kernel_function

from tokentail.frameworks.semantic_kernel import chat_completion_agent, chat_service


class WeatherPlugin:
    @kernel_function(description="The current weather in a city.")
    def get_weather(self, city: Annotated[str, "the city"]) -> dict[str, object]:
        return {"city": city, "temperature_c": 21, "sky": "sunny"}


service = OpenAIChatCompletion(
    ai_model_id=os.environ.get("TOKENTAIL_EXAMPLE_MODEL", "gpt-4o-mini"),
    async_client=AsyncOpenAI(),  # OPENAI_API_KEY and OPENAI_BASE_URL from the environment
)
agent = ChatCompletionAgent(
    service=service,
    name="weather",
    instructions="You answer questions about the weather. Call get_weather for the city asked about.",
    plugins=[WeatherPlugin()],
)
weather = chat_completion_agent(agent)

kernel = Kernel()
kernel.add_plugin(WeatherPlugin(), "WeatherPlugin")
settings = OpenAIChatPromptExecutionSettings(function_choice_behavior=FunctionChoiceBehavior.Auto())
weather_chat = chat_service(service, settings, kernel)
