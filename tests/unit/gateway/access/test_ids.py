"""gateway/access/ids.py: session ids, and the session of a chat id a chat UI chose."""

from tokentail.gateway.access.ids import chat_session_id, is_session_id, new_session_id


def test_a_chat_id_names_one_session_per_tenant() -> None:
    session_id = chat_session_id("acme", "chat-42")
    assert is_session_id(session_id)  # every route takes it as any other session id
    assert chat_session_id("acme", "chat-42") == session_id
    assert chat_session_id("beta", "chat-42") != session_id  # tenants' chats never meet
    assert chat_session_id("acme", "chat-43") != session_id


def test_a_session_id_used_as_a_chat_id_is_that_session() -> None:
    session_id = new_session_id()
    assert chat_session_id("acme", session_id) == session_id
