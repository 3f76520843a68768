"""A Haystack weather agent, streamed by tokentail: the tutorials' `Agent` with an OpenAI chat
generator and a `@tool`, wrapped in one line.

    .venv/bin/pip install -e '.[haystack]'
    OPENAI_API_KEY=sk-... TOKENTAIL_AGENTS='{"weather": "examples.haystack_agent:weather"}' \\
        .venv/bin/tokentail dev
    .venv/bin/tokentail chat --agent weather "What is the weather in Paris?"

`OPENAI_BASE_URL` points it at any server with the OpenAI chat API; TOKENTAIL_EXAMPLE_MODEL names
the model (gpt-4o-mini). Haystack sends anonymous usage statistics unless
HAYSTACK_TELEMETRY_ENABLED=False.
"""

import os
from typing import Annotated

from haystack.components.agents import Agent
from haystack.components.generators.chat import OpenAIChatGenerator
from haystack.tools import tool
from haystack.utils import Secret

from tokentail.frameworks.haystack import from_agent


@tool
def get_weather(city: Annotated[str, "the city"]) -> dict[str, object]:
    """The current weather in a city."""
    return {"city": city, "temperature_c": 21, "sky": "sunny"}


agent = Agent(
    chat_generator=OpenAIChatGenerator(
        model=os.environ.get("TOKENTAIL_EXAMPLE_MODEL", "gpt-4o-mini"),
        api_key=Secret.from_env_var("OPENAI_API_KEY"),
        api_base_url=os.environ.get("OPENAI_BASE_URL"),  # None: OpenAI's
    ),
    tools=[get_weather],
    system_prompt="You answer questions about the weather. Call get_weather for the city asked about.",
)
weather = from_agent(agent)
