"""gateway/protocols/responses/: the encoding, output items, WebSocket mode, sub-agents, finished streams."""
