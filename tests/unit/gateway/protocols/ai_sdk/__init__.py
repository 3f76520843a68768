"""gateway/protocols/ai_sdk/: the AI SDK's sub-agent pattern from a session's sub-agent tree."""
