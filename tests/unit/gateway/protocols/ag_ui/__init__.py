"""gateway/protocols/ag_ui/: AG-UI's subagents from a session's sub-agent tree."""
