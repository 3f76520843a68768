"""A LangGraph ReAct weather agent, streamed by tokentail: the tutorial's graph, unchanged, wrapped
in one line. (Without LangGraph, a chat model streamed by a callback handler: examples/langchain_agent.py.)

    .venv/bin/pip install -e '.[langgraph]'
    OPENAI_API_KEY=sk-... TOKENTAIL_AGENTS='{"weather": "examples.langgraph_agent:weather"}' \\
        .venv/bin/tokentail dev
    .venv/bin/tokentail chat --agent weather "What is the weather in Paris?"

`OPENAI_BASE_URL` points it at any server with the OpenAI chat API; TOKENTAIL_EXAMPLE_MODEL names
the model (gpt-4o-mini).
"""

import os

from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import create_react_agent

from tokentail.frameworks.langgraph import langgraph_agent


@tool
def get_weather(city: str) -> dict[str, object]:
    """The current weather in a city."""
    return {"city": city, "temperature_c": 21, "sky": "sunny"}


# OPENAI_API_KEY and OPENAI_BASE_URL from the environment; `stream_usage=True`: the stream ends with
# the usage. The graph streams the model's tokens whatever its `streaming` setting.
model = ChatOpenAI(model=os.environ.get("TOKENTAIL_EXAMPLE_MODEL", "gpt-4o-mini"), stream_usage=True)
weather = langgraph_agent(create_react_agent(model, [get_weather], prompt="You answer questions about the weather."))
