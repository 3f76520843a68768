"""An AG-UI request's messages (`RunAgentInput.messages`): their texts, and the `ClientChat` they are
to the core (gateway/commands/branching.py)."""

from typing import Any

from tokentail.gateway.commands.branching import ClientChat, Said


def ag_ui_chat(messages: list[Any], text: str) -> ClientChat:
    """An AG-UI `RunAgentInput.messages` (the last the user's `text`) as a `ClientChat`: its user
    messages' texts (an assistant message's id is a text block's, not a run's, while it streams)."""
    return ClientChat(text, [Said(message_text(message)) for message in messages[:-1] if message.role == "user"])


def message_text(message: Any) -> str:
    """An AG-UI message's text: its content, a string or text parts."""
    content = message.content
    return content if isinstance(content, str) else "".join(getattr(part, "text", "") or "" for part in content)
