"""What useChat's transports send: a chat request (its messages, `trigger`, `messageId`), and the
`ClientChat` it is to the core (gateway/commands/branching.py)."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tokentail.gateway.access.ids import is_run_id
from tokentail.gateway.commands.branching import ClientChat, Said
from tokentail.shared.vocabulary.errors import InvalidInput


class UiMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    role: Literal["system", "user", "assistant"]
    parts: list[dict[str, Any]] = Field(default_factory=list)

    def text(self) -> str:
        return "".join(
            part["text"] for part in self.parts if part.get("type") == "text" and isinstance(part.get("text"), str)
        )


class ChatRequest(BaseModel):
    """What `DefaultChatTransport` posts (with whatever `body` the app adds, which is ignored)."""

    model_config = ConfigDict(extra="allow")
    id: str = Field(description="the chat id (useChat's `id`)")
    messages: list[UiMessage]
    trigger: str | None = None
    message_id: Annotated[str | None, Field(alias="messageId")] = None

    def user_text(self) -> str:
        last = self.messages[-1] if self.messages else None
        if last is None or last.role != "user" or not last.text():
            raise InvalidInput("the last message must be the user's, with text: it is the input of the run")
        return last.text()

    def approvals(self) -> dict[str, dict[str, Any]]:
        """Answers to approval requests (`addToolApprovalResponse`), by approval id: the chat sends
        them as its last message, the assistant's, whose tool parts hold them."""
        last = self.messages[-1] if self.messages else None
        if last is None or last.role != "assistant":
            return {}
        answers = {}
        for part in last.parts:
            approval = part.get("approval")
            if part.get("state") != "approval-responded" or not isinstance(approval, dict):
                continue
            if isinstance(approval.get("id"), str) and isinstance(approval.get("approved"), bool):
                reason = approval.get("reason")
                answers[approval["id"]] = {"approved": approval["approved"], **({"reason": reason} if reason else {})}
        return answers


def ui_messages_chat(request: ChatRequest) -> ClientChat:
    """A useChat request (its `messages`, `trigger`, `messageId`) as a `ClientChat`."""
    text = request.user_text()
    history: list[Said] = []
    for message in request.messages[:-1]:
        if message.role == "user":
            history.append(Said(message.text()))
        elif message.role == "assistant" and history and history[-1].answer_id is None:
            if is_run_id(message.id):  # else not an answer the gateway streamed
                history[-1] = Said(history[-1].text, message.id)
    regenerate = request.trigger == "regenerate-message"
    edited = request.message_id if request.trigger == "submit-message" else None
    return ClientChat(text, history, regenerate=regenerate, edited=edited)
