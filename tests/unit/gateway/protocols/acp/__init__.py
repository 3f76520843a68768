"""gateway/protocols/acp/: ACP's messages from stored events, and a prompt as a run's input."""
