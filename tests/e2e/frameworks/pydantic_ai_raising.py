"""The PydanticAI example's agent with its weather service down: the tool raises, as a tutorial's tool
would (PydanticAI sends only a ModelRetry back to the model; anything else ends the run)."""

import os

from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from tokentail.frameworks.pydantic_ai import pydantic_ai_agent

model = OpenAIChatModel(os.environ.get("TOKENTAIL_EXAMPLE_MODEL", "gpt-4o-mini"), provider=OpenAIProvider())
agent = Agent(model, instructions="Call get_weather for the city asked about.")


@agent.tool_plain  # type: ignore[untyped-decorator, misc, unused-ignore]  # Any where PydanticAI is not installed
def get_weather(city: str) -> dict[str, object]:
    """The current weather in a city."""
    raise RuntimeError("weather service unavailable")


weather = pydantic_ai_agent(agent)
