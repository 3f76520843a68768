"""The Haystack tutorial's first pipeline, as seed 000 wrote it: a custom component that wraps an
`OpenAIChatGenerator`, calls it whole (no streaming) and answers with `reply: str`, run by
`from_pipeline`. Its answer used to be lost (only an output named `replies` was read)."""

import os
from typing import Any

from haystack import Pipeline, component
from haystack.components.generators.chat import OpenAIChatGenerator
from haystack.dataclasses import ChatMessage

from tokentail.frameworks.haystack import from_pipeline


@component  # type: ignore[untyped-decorator, misc, unused-ignore]  # Any where Haystack is not installed
class Responder:
    def __init__(self) -> None:
        # OPENAI_API_KEY and OPENAI_BASE_URL from the environment
        self.llm = OpenAIChatGenerator(model=os.environ.get("TOKENTAIL_EXAMPLE_MODEL", "gpt-4o-mini"))

    @component.output_types(reply=str)  # type: ignore[untyped-decorator, unused-ignore]
    def run(self, question: str) -> dict[str, Any]:
        return {"reply": self.llm.run([ChatMessage.from_user(question)])["replies"][0].text}


pipeline = Pipeline()
pipeline.add_component("responder", Responder())
answer = from_pipeline(pipeline, lambda ctx: {"responder": {"question": ctx.input}})
