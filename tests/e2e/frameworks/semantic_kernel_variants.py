"""The Semantic Kernel example's pieces, as its tutorials also write them: a plugin whose service is
down (its function raises) and a chat service with a system message."""

import os
from typing import Annotated

from openai import AsyncOpenAI
from semantic_kernel import Kernel
from semantic_kernel.agents import ChatCompletionAgent
from semantic_kernel.connectors.ai import FunctionChoiceBehavior
from semantic_kernel.connectors.ai.open_ai import OpenAIChatCompletion, OpenAIChatPromptExecutionSettings
from semantic_kernel.functions import kernel_function

from tokentail.frameworks.semantic_kernel import chat_completion_agent, chat_service

SYSTEM = "You answer questions about the weather, in one sentence."


class DownWeatherPlugin:
    @kernel_function(name="get_weather", description="The current weather in a city.")  # type: ignore[untyped-decorator, misc, unused-ignore]
    def get_weather(self, city: Annotated[str, "the city"]) -> dict[str, object]:
        raise RuntimeError("weather service unavailable")


service = OpenAIChatCompletion(
    ai_model_id=os.environ.get("TOKENTAIL_EXAMPLE_MODEL", "gpt-4o-mini"), async_client=AsyncOpenAI()
)
down = chat_completion_agent(
    ChatCompletionAgent(
        service=service, name="weather", instructions="Call get_weather.", plugins=[DownWeatherPlugin()]
    )
)
settings = OpenAIChatPromptExecutionSettings(function_choice_behavior=FunctionChoiceBehavior.Auto())
kernel = Kernel()
kernel.add_plugin(DownWeatherPlugin(), "WeatherPlugin")
with_system = chat_service(service, settings, kernel, system_message=SYSTEM)
