"""LangChain called as its tutorials call it, synchronously, inside a tokentail agent: a mistake that
blocked the worker's event loop, and hung its runs, until the handler learned to refuse it."""

import os

from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI

from tokentail import RunContext
from tokentail.frameworks.langchain import TokentailCallbackHandler


async def predict(ctx: RunContext) -> None:
    model = os.environ.get("TOKENTAIL_EXAMPLE_MODEL", "gpt-4o-mini")
    chat = ChatOpenAI(model=model, streaming=True, callbacks=[TokentailCallbackHandler(ctx)])
    chat.invoke([HumanMessage(ctx.input)])
