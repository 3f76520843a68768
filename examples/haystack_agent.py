"""A Haystack weather agent, streamed by tokentail: the tutorials' `Agent` with an OpenAI chat
generator and a `@tool`, wrapped in one line.

    .venv/bin/pip install -e '.[haystack]'
    TOKENTAIL_AGENTS='{"weather": "examples.haystack_agent:weather"}' \\
        .venv/bin/tokentail dev --offline
    .venv/bin/tokentail chat --agent weather "What is the weather in Paris?"

`--offline`: on the offline model, served to the workers as an OpenAI API (no key, no network). On
OpenAI: OPENAI_API_KEY, and no `--offline`; `OPENAI_BASE_URL` points it at any server with the
OpenAI chat API; TOKENTAIL_EXAMPLE_MODEL names the model (gpt-4o-mini). Haystack sends anonymous
usage statistics unless HAYSTACK_TELEMETRY_ENABLED=False.
"""

import os
from typing import Annotated

from haystack.components.agents import Agent
from haystack.components.generators.chat import OpenAIChatGenerator
from haystack.hooks.human_in_the_loop import ConfirmationHook
from haystack.tools import tool
from haystack.utils import Secret

from tokentail.frameworks.haystack import AskTokentail, from_agent


@tool
def get_weather(city: Annotated[str, "the city"]) -> dict[str, object]:
    """The current weather in a city."""
    return {"city": city, "temperature_c": 21, "sky": "sunny"}


def _agent(**options: object) -> Agent:
    return Agent(
        chat_generator=OpenAIChatGenerator(
            model=os.environ.get("TOKENTAIL_EXAMPLE_MODEL", "gpt-4o-mini"),
            api_key=Secret.from_env_var("OPENAI_API_KEY"),
            api_base_url=os.environ.get("OPENAI_BASE_URL"),  # None: OpenAI's
            generation_kwargs={"temperature": 0},
        ),
        tools=[get_weather],
        system_prompt="You answer questions about the weather. Call get_weather for the city asked about.",
        **options,  # type: ignore[arg-type]
    )


weather = from_agent(_agent())
# The same agent, asking a person before each get_weather call (Haystack's confirmation hook):
# `tokentail chat --agent careful_weather ...` asks at the terminal, the demo page shows buttons.
careful_weather = from_agent(_agent(hooks={"before_tool": [ConfirmationHook({"get_weather": AskTokentail()})]}))
