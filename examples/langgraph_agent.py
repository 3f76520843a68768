"""A LangGraph weather agent, streamed by tokentail: the graph of LangGraph's "add tools" tutorial
(a model node, a ToolNode, `tools_condition`), unchanged, wrapped in one line. (Without LangGraph, a
chat model streamed by a callback handler: examples/langchain_agent.py.)

    .venv/bin/pip install -e '.[langgraph]'
    TOKENTAIL_AGENTS='{"weather": "examples.langgraph_agent:weather"}' \\
        .venv/bin/tokentail dev --offline
    .venv/bin/tokentail chat --agent weather "What is the weather in Paris?"

`--offline`: on the offline model, served to the workers as an OpenAI API (no key, no network). On
OpenAI: OPENAI_API_KEY, and no `--offline`; `OPENAI_BASE_URL` points it at any server with the
OpenAI chat API; TOKENTAIL_EXAMPLE_MODEL names the model (gpt-4o-mini).
"""

import os

from langchain_core.messages import SystemMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from tokentail.frameworks.langgraph import langgraph_agent


@tool
def get_weather(city: str) -> dict[str, object]:
    """The current weather in a city."""
    return {"city": city, "temperature_c": 21, "sky": "sunny"}


# OPENAI_API_KEY and OPENAI_BASE_URL from the environment; `stream_usage=True`: the stream ends with
# the usage. The graph streams the model's tokens whatever its `streaming` setting.
model = ChatOpenAI(model=os.environ.get("TOKENTAIL_EXAMPLE_MODEL", "gpt-4o-mini"), stream_usage=True)
chat = model.bind_tools([get_weather])
PROMPT = SystemMessage("You answer questions about the weather.")


async def call_model(state: MessagesState) -> dict[str, object]:
    return {"messages": [await chat.ainvoke([PROMPT, *state["messages"]])]}


graph = StateGraph(MessagesState)
graph.add_node("model", call_model)
graph.add_node("tools", ToolNode([get_weather]))
graph.add_edge(START, "model")
graph.add_conditional_edges("model", tools_condition)
graph.add_edge("tools", "model")
weather = langgraph_agent(graph.compile())
