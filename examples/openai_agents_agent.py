"""An OpenAI Agents SDK weather agent, streamed by tokentail: the SDK's quickstart agent with a
function tool, wrapped in one line.

    .venv/bin/pip install -e '.[openai-agents]'
    TOKENTAIL_AGENTS='{"weather": "examples.openai_agents_agent:weather"}' \\
        .venv/bin/tokentail dev --offline
    .venv/bin/tokentail chat --agent weather "What is the weather in Paris?"

`--offline`: on the offline model, served to the workers as an OpenAI API (no key, no network). On
OpenAI: OPENAI_API_KEY, and no `--offline`; `OPENAI_BASE_URL` points it at any server with the
OpenAI chat API; TOKENTAIL_EXAMPLE_MODEL names the model (gpt-4o-mini).
"""

import os

from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

from tokentail.frameworks.openai_agents import openai_agent

set_tracing_disabled(True)  # the SDK would upload a trace of each run to OpenAI


@function_tool
def get_weather(city: str) -> dict[str, object]:
    """The current weather in a city.

    Args:
        city: the city
    """
    return {"city": city, "temperature_c": 21, "sky": "sunny"}


agent = Agent(
    name="weather",
    instructions="You answer questions about the weather. Call get_weather for the city asked about.",
    tools=[get_weather],
    model=OpenAIChatCompletionsModel(
        model=os.environ.get("TOKENTAIL_EXAMPLE_MODEL", "gpt-4o-mini"),
        openai_client=AsyncOpenAI(),  # OPENAI_API_KEY and OPENAI_BASE_URL from the environment
    ),
    # Usage comes in the stream's last chunk only when asked for (the SDK asks api.openai.com only).
    model_settings=ModelSettings(include_usage=True),
)
weather = openai_agent(agent)
