"""A LangChain weather agent without LangGraph, streamed by tokentail: a chat model with a tool,
called in a loop, its tokens and tool calls streamed by a callback handler as LangChain's tutorials
write one (`on_llm_new_token`). Needs only the `langchain` extra.

    .venv/bin/pip install -e '.[langchain]'
    TOKENTAIL_AGENTS='{"weather": "examples.langchain_agent:weather"}' \\
        .venv/bin/tokentail dev --offline
    .venv/bin/tokentail chat --agent weather "What is the weather in Paris?"

`--offline`: on the offline model, served to the workers as an OpenAI API (no key, no network). On
OpenAI: OPENAI_API_KEY, and no `--offline`; `OPENAI_BASE_URL` points it at any server with the
OpenAI chat API; TOKENTAIL_EXAMPLE_MODEL names the model (gpt-4o-mini).
"""

import os

from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from tokentail import RunContext
from tokentail.frameworks.langchain import TokentailCallbackHandler, history


@tool
def get_weather(city: str) -> dict[str, object]:
    """The current weather in a city."""
    return {"city": city, "temperature_c": 21, "sky": "sunny"}


# OPENAI_API_KEY and OPENAI_BASE_URL from the environment. `streaming=True`: `ainvoke` streams, token
# by token, to the callback handler; `stream_usage=True`: the stream ends with the usage.
model = ChatOpenAI(model=os.environ.get("TOKENTAIL_EXAMPLE_MODEL", "gpt-4o-mini"), streaming=True, stream_usage=True)


async def weather(ctx: RunContext) -> None:
    """The model and the tools it calls, in a loop; the handler streams both into the run."""
    config = {"callbacks": [TokentailCallbackHandler(ctx)]}
    chat = model.bind_tools([get_weather])
    messages: list[BaseMessage] = [*history(ctx), HumanMessage(ctx.input)]
    for _ in range(4):
        reply = await chat.ainvoke(messages, config=config)
        messages.append(reply)
        if not reply.tool_calls:
            return
        for call in reply.tool_calls:  # given the whole call, a tool answers with its ToolMessage
            messages.append(await get_weather.ainvoke(call, config=config))
