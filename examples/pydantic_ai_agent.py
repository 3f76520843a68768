"""A PydanticAI weather agent, as in its tutorials (an `Agent` with a `get_weather` tool), streamed
by tokentail: wrapped in one line.

    .venv/bin/pip install -e '.[pydantic-ai]'
    TOKENTAIL_AGENTS='{"weather": "examples.pydantic_ai_agent:weather"}' \\
        .venv/bin/tokentail dev --offline
    .venv/bin/tokentail chat --agent weather "What is the weather in Paris?"

`--offline`: on the offline model, served to the workers as an OpenAI API (no key, no network). On
OpenAI: OPENAI_API_KEY, and no `--offline`; `OPENAI_BASE_URL` points it at any server with the
OpenAI chat API; TOKENTAIL_EXAMPLE_MODEL names the model (gpt-4o-mini).
"""

import os

from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from tokentail.frameworks.pydantic_ai import pydantic_ai_agent

model = OpenAIChatModel(
    os.environ.get("TOKENTAIL_EXAMPLE_MODEL", "gpt-4o-mini"),
    provider=OpenAIProvider(),  # OPENAI_API_KEY and OPENAI_BASE_URL from the environment
)
agent = Agent(
    model,
    instructions="You answer questions about the weather. Call get_weather for the city asked about.",
)


@agent.tool_plain
def get_weather(city: str) -> dict[str, object]:
    """The current weather in a city."""
    return {"city": city, "temperature_c": 21, "sky": "sunny"}


weather = pydantic_ai_agent(agent)
