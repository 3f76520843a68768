"""A LangGraph ReAct weather agent, streamed by tokentail: the tutorial's graph, unchanged, wrapped
in one line; and `weather_chain`, a plain LangChain chat model with tools streamed through a
callback handler, as the LangChain tutorials write it.

    .venv/bin/pip install -e '.[langgraph]'
    OPENAI_API_KEY=sk-... TOKENTAIL_AGENTS='{"weather": "examples.langgraph_agent:weather"}' \\
        .venv/bin/tokentail dev
    .venv/bin/tokentail chat --agent weather "What is the weather in Paris?"

`OPENAI_BASE_URL` points it at any server with the OpenAI chat API; TOKENTAIL_EXAMPLE_MODEL names
the model (gpt-4o-mini).
"""

import os

from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import create_react_agent

from tokentail.frameworks.langchain import TokentailCallbackHandler, history
from tokentail.frameworks.langgraph import langgraph_agent
from worker.context import RunContext


@tool
def get_weather(city: str) -> dict[str, object]:
    """The current weather in a city."""
    return {"city": city, "temperature_c": 21, "sky": "sunny"}


# OPENAI_API_KEY and OPENAI_BASE_URL from the environment. `streaming=True` has `ainvoke` stream
# too (the callback handler's tokens); usage comes with the stream.
model = ChatOpenAI(model=os.environ.get("TOKENTAIL_EXAMPLE_MODEL", "gpt-4o-mini"), streaming=True, stream_usage=True)
weather = langgraph_agent(create_react_agent(model, [get_weather], prompt="You answer questions about the weather."))


async def weather_chain(ctx: RunContext) -> None:
    """Without LangGraph: the model and its tool called in a loop, streamed by the callback handler."""
    config = {"callbacks": [TokentailCallbackHandler(ctx)]}
    chat = model.bind_tools([get_weather])
    messages = [*history(ctx), HumanMessage(ctx.input)]
    for _ in range(4):
        reply = await chat.ainvoke(messages, config=config)
        messages.append(reply)
        if not reply.tool_calls:
            return
        for call in reply.tool_calls:  # given the whole call, a tool answers with its ToolMessage
            messages.append(await get_weather.ainvoke(call, config=config))
