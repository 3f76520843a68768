"""An MCP server of a user's own (TOKENTAIL_MCP_SERVER="tests.servers.mcp_server:server"), written with the
`mcp` SDK as its docs write one: what the conformance suite's core scenarios ask of a server that
tokentail's agents are not (content of every kind, resources, prompts, completions, the SDK's own
multi-round-trip tools). tokentail serves it at /mcp beside the agents (tests/agents/mcp_agents.py)."""

import asyncio
import base64
import json
from typing import Annotated, Any

from mcp.server.caching import CacheableMethod, CacheHint
from mcp.server.extension import Extension
from mcp.server.mcpserver import Context, MCPServer, RequestStateSecurity
from mcp.server.mcpserver.prompts.base import Prompt, UserMessage
from mcp.shared.exceptions import MCPError
from mcp.types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    AudioContent,
    Completion,
    CompletionArgument,
    CompletionContext,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    EmbeddedResource,
    ImageContent,
    InputRequest,
    InputRequiredResult,
    ListRootsRequest,
    ListRootsResult,
    PromptReference,
    ResourceTemplateReference,
    SamplingMessage,
    TextContent,
    TextResourceContents,
)
from pydantic import Field

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="  # 1x1
WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="  # empty
KEY = b"tests/servers/mcp_server.py: the key every gateway seals requestState with"
LISTS: tuple[CacheableMethod, ...] = (
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
)

NAME = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
OK = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


def _ask(message: str, schema: dict[str, Any]) -> ElicitRequest:
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))


def _sample(text: str) -> CreateMessageRequest:
    message = SamplingMessage(role="user", content=TextContent(type="text", text=text))
    return CreateMessageRequest(params=CreateMessageRequestParams(messages=[message], max_tokens=100))


def _accepted(answer: Any, field: str) -> Any:
    return answer.content.get(field) if isinstance(answer, ElicitResult) and answer.content else None


def embedded(uri: str, text: str, mime_type: str = "text/plain") -> EmbeddedResource:
    return EmbeddedResource(type="resource", resource=TextResourceContents(uri=uri, mime_type=mime_type, text=text))


def server(extensions: list[Extension]) -> MCPServer[Any]:
    """Built by tokentail's gateway with its extensions (the agents' tasks) in it."""
    mcp: MCPServer[Any] = MCPServer(
        "tokentail-tests",
        version="1.0.0",
        extensions=extensions,
        request_state_security=RequestStateSecurity(keys=[KEY]),  # shared: any gateway takes a retry
        cache_hints={method: CacheHint(ttl_ms=1000, scope="public") for method in LISTS},
    )

    _content_tools(mcp)
    _diagnostic_tools(mcp)
    _asking_tools(mcp)
    _more_asking_tools(mcp)
    _resources_and_prompts(mcp)
    return mcp


def _content_tools(mcp: MCPServer[Any]) -> None:
    @mcp.tool()
    def test_simple_text() -> str:
        """Answers one text."""
        return "This is a simple text response for testing."

    @mcp.tool()
    def test_image_content() -> list[ImageContent]:
        """Answers an image."""
        return [ImageContent(type="image", data=PNG, mime_type="image/png")]

    @mcp.tool()
    def test_audio_content() -> list[AudioContent]:
        """Answers a sound."""
        return [AudioContent(type="audio", data=WAV, mime_type="audio/wav")]

    @mcp.tool()
    def test_embedded_resource() -> list[EmbeddedResource]:
        """Answers a resource."""
        return [embedded("test://embedded-resource", "This is an embedded resource content.")]

    @mcp.tool()
    def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
        """Answers a text, an image and a resource."""
        return [
            TextContent(type="text", text="Multiple content types test:"),
            ImageContent(type="image", data=PNG, mime_type="image/png"),
            embedded("test://mixed-content-resource", '{"test": "data", "value": 123}', "application/json"),
        ]

    @mcp.tool()
    def test_error_handling() -> str:
        """Fails."""
        raise RuntimeError("This tool intentionally returns an error for testing")


def _diagnostic_tools(mcp: MCPServer[Any]) -> None:
    @mcp.tool()
    async def test_tool_with_progress(ctx: Context) -> str:
        """Reports its progress."""
        for step in (0, 50, 100):
            await ctx.report_progress(progress=step, total=100, message=f"Completed step {step} of 100")
            await asyncio.sleep(0.05)
        meta = ctx.request_context.meta or {}
        return str(meta.get("progress_token", 0))

    @mcp.tool()
    async def test_logging_tool(ctx: Context) -> str:
        """Logs, if the request asked for logs."""
        await ctx.info("Tool execution started")  # sent only when the request's _meta sets a log level
        return "logged"

    test_tool_with_logging = test_logging_tool
    mcp.add_tool(test_tool_with_logging, name="test_tool_with_logging")

    @mcp.tool()
    def test_x_mcp_header(
        region: Annotated[
            str, Field(description="also sent as Mcp-Param-Region", json_schema_extra={"x-mcp-header": "Region"})
        ] = "",
    ) -> str:
        """Takes a parameter its client mirrors into a header (SEP-2243), which the SDK checks."""
        return f"region={region}"

    @mcp.tool()
    async def test_missing_capability(ctx: Context) -> str:
        """Needs the client's sampling."""
        capabilities = ctx.client_capabilities
        if capabilities is None or capabilities.sampling is None:
            raise MCPError(
                code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                message="This tool requires the client's sampling capability",
                data={"requiredCapabilities": {"sampling": {}}},
            )
        return "sampling declared"

    @mcp.tool()
    async def test_streaming_elicitation(ctx: Context) -> str | InputRequiredResult:
        """Asks for a name, in the response itself."""
        if ctx.input_responses and "user_name" in ctx.input_responses:
            return f"Hello, {_accepted(ctx.input_responses['user_name'], 'name')}!"
        return InputRequiredResult(input_requests={"user_name": _ask("What is your name?", NAME)})

    def dynamic() -> str:
        """Added and removed at once."""
        return "dynamic"

    @mcp.tool()
    async def test_trigger_tool_change(ctx: Context) -> str:
        """Changes the tool list."""
        mcp.add_tool(dynamic, name="test_dynamic_tool")
        mcp.remove_tool("test_dynamic_tool")
        await ctx.notify_tools_changed()
        return "tool list changed"

    @mcp.tool()
    async def test_trigger_prompt_change(ctx: Context) -> str:
        """Changes the prompt list."""
        mcp.add_prompt(Prompt.from_function(dynamic, name="test_dynamic_prompt", description="dynamic"))
        mcp.remove_prompt("test_dynamic_prompt")
        await ctx.notify_prompts_changed()
        return "prompt list changed"


def _asking_tools(mcp: MCPServer[Any]) -> None:
    # The SDK's own multi-round-trip requests (SEP-2322), sampling and roots included, which a run's
    # question (an elicitation) is not.
    @mcp.tool()
    async def test_input_required_result_elicitation(ctx: Context) -> str | InputRequiredResult:
        """Asks a name."""
        if ctx.input_responses and "user_name" in ctx.input_responses:
            return f"Hello, {_accepted(ctx.input_responses['user_name'], 'name') or '?'}!"
        return InputRequiredResult(input_requests={"user_name": _ask("What is your name?", NAME)})

    @mcp.tool()
    async def test_input_required_result_sampling(ctx: Context) -> str | InputRequiredResult:
        """Asks the client's model."""
        if ctx.input_responses and "capital_question" in ctx.input_responses:
            answer = ctx.input_responses["capital_question"]
            said = (
                answer.content.text if isinstance(answer, CreateMessageResult) and answer.content.type == "text" else ""
            )
            return f"Model said: {said}"
        return InputRequiredResult(input_requests={"capital_question": _sample("What is the capital of France?")})

    @mcp.tool()
    async def test_input_required_result_list_roots(ctx: Context) -> str | InputRequiredResult:
        """Asks the client's roots."""
        if ctx.input_responses and "client_roots" in ctx.input_responses:
            answer = ctx.input_responses["client_roots"]
            return f"Client exposed {len(answer.roots) if isinstance(answer, ListRootsResult) else 0} root(s)."
        return InputRequiredResult(input_requests={"client_roots": ListRootsRequest()})

    @mcp.tool()
    async def test_input_required_result_request_state(ctx: Context) -> str | InputRequiredResult:
        """Keeps its state in requestState."""
        if ctx.input_responses and "confirm" in ctx.input_responses and ctx.request_state == "confirming":
            return "state-ok: confirmation received"
        return InputRequiredResult(input_requests={"confirm": _ask("Please confirm", OK)}, request_state="confirming")


def _more_asking_tools(mcp: MCPServer[Any]) -> None:
    @mcp.tool()
    async def test_input_required_result_multiple_inputs(ctx: Context) -> str | InputRequiredResult:
        """Asks three things at once."""
        if ctx.input_responses and {"user_name", "greeting", "client_roots"} <= ctx.input_responses.keys():
            return "All inputs received."
        requests: dict[str, InputRequest] = {
            "user_name": _ask("What is your name?", NAME),
            "greeting": _sample("Generate a greeting"),
            "client_roots": ListRootsRequest(),
        }
        return InputRequiredResult(input_requests=requests, request_state="multiple-inputs")

    @mcp.tool()
    async def test_input_required_result_multi_round(ctx: Context) -> str | InputRequiredResult:
        """Asks a name, then a colour."""
        state = json.loads(ctx.request_state) if ctx.request_state else {"round": 0}
        responses = ctx.input_responses or {}
        if state["round"] == 1 and "step1" in responses:
            color = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}
            return InputRequiredResult(
                input_requests={"step2": _ask("Step 2: What is your favorite color?", color)},
                request_state=json.dumps({"round": 2, "name": _accepted(responses["step1"], "name")}),
            )
        if state["round"] == 2 and "step2" in responses:
            return f"{state['name']} likes {_accepted(responses['step2'], 'color')}."
        return InputRequiredResult(
            input_requests={"step1": _ask("Step 1: What is your name?", NAME)}, request_state=json.dumps({"round": 1})
        )

    @mcp.tool()
    async def test_input_required_result_tampered_state(ctx: Context) -> str | InputRequiredResult:
        """Its requestState is sealed by the SDK: a changed one is refused before it runs."""
        if ctx.request_state is None:
            return InputRequiredResult(input_requests={"confirm": _ask("Please confirm", OK)}, request_state="round-1")
        return f"state-ok: {ctx.request_state}"

    @mcp.tool()
    async def test_input_required_result_capabilities(ctx: Context) -> InputRequiredResult:
        """Asks only what the client can answer."""
        capabilities = ctx.client_capabilities
        requests: dict[str, InputRequest] = {}
        if capabilities is None or capabilities.sampling is not None:
            requests["sample"] = _sample("Say hello")
        if capabilities is None or capabilities.elicitation is not None:
            requests["ask"] = _ask("What is your name?", NAME)
        return InputRequiredResult(input_requests=requests, request_state="capability-gated")


def _resources_and_prompts(mcp: MCPServer[Any]) -> None:
    @mcp.resource("test://static-text")
    def static_text() -> str:
        """A text."""
        return "This is the content of the static text resource."

    @mcp.resource("test://static-binary")
    def static_binary() -> bytes:
        """An image."""
        return base64.b64decode(PNG)

    @mcp.resource("test://template/{id}/data")
    def template(id: str) -> str:
        """Data by id."""
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @mcp.resource("test://watched-resource")
    def watched() -> str:
        """A resource that does not change."""
        return "Watched resource content"

    @mcp.prompt()
    def test_simple_prompt() -> list[UserMessage]:
        """A prompt."""
        return [UserMessage(role="user", content=TextContent(type="text", text="This is a simple prompt for testing."))]

    @mcp.prompt()
    def test_prompt_with_arguments(arg1: str, arg2: str) -> list[UserMessage]:
        """A prompt of two arguments."""
        text = f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
        return [UserMessage(role="user", content=TextContent(type="text", text=text))]

    @mcp.prompt()
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:  # noqa: N803 (the suite's name)
        """A prompt with a resource."""
        return [
            UserMessage(role="user", content=embedded(resourceUri, "Embedded resource content for testing.")),
            UserMessage(
                role="user", content=TextContent(type="text", text="Please process the embedded resource above.")
            ),
        ]

    @mcp.prompt()
    def test_prompt_with_image() -> list[UserMessage]:
        """A prompt with an image."""
        return [
            UserMessage(role="user", content=ImageContent(type="image", data=PNG, mime_type="image/png")),
            UserMessage(role="user", content=TextContent(type="text", text="Please analyze the image above.")),
        ]

    @mcp.prompt()
    async def test_input_required_result_prompt(ctx: Context) -> list[UserMessage] | InputRequiredResult:
        """A prompt that asks first."""
        if ctx.input_responses and "user_context" in ctx.input_responses:
            text = f"Use the following context: {_accepted(ctx.input_responses['user_context'], 'context')}"
            return [UserMessage(role="user", content=TextContent(type="text", text=text))]
        schema = {"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]}
        return InputRequiredResult(input_requests={"user_context": _ask("What context should the prompt use?", schema)})

    @mcp.completion()  # type: ignore[no-untyped-call, untyped-decorator]  # the SDK's decorator is untyped
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion:
        return Completion(values=[], total=0, has_more=False)
