"""npm `@agentclientprotocol/sdk` (pinned by this folder's lockfile), its experimental remote transports
(Streamable HTTP and WebSocket) against a tokentail gateway and worker as separate processes, as an editor
connects: a prompt streamed whole, a permission asked and answered, a session loaded on a new connection
with its history once."""

import pytest

from tests.node.conftest import ChatStack, run_node

pytestmark = pytest.mark.acp


@pytest.mark.parametrize("ws", [False, True], ids=["http", "websocket"])
def test_a_prompt_streams_whole_and_a_loaded_session_replays_it_once(shared_chats: ChatStack, ws: bool) -> None:
    chats = shared_chats
    result = run_node("acp.mjs", "promptThenLoad", {"url": chats.url, "apiKey": chats.api_key, "ws": ws}).result
    first, loaded = result["first"], result["loaded"]
    assert first["loadSession"] is True and first["stopReason"] == "end_turn"
    state = chats.http.get(f"/v1/sessions/{first['sessionId']}").json()
    assert first["said"] == state["runs"][0]["output"]
    assert first["kinds"].count("tool_call") == 1 and "tool_call_update" in first["kinds"]
    assert loaded["said"] == first["said"]  # the history once, on a new connection
    assert loaded["kinds"][0] == "user_message_chunk"


def test_a_permission_is_asked_and_the_editor_s_answer_goes_on(shared_chats: ChatStack) -> None:
    chats = shared_chats
    result = run_node("acp.mjs", "approval", {"url": chats.url, "apiKey": chats.api_key, "ws": False}).result
    assert result["asked"] == ["Delete 3 files?"]
    assert (result["stopReason"], result["said"]) == ("end_turn", "Checking. Done: deleted.")
