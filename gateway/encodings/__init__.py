"""tokentail's own wire framings of a session's stream, one module each: each turns the feed's
batches of stored events into bytes (`Encoding`, gateway/reading/response.py), the stored JSON
spliced in as it is. May import the gateway's access/, live/, reading/, commands/ (the socket asks
for runs), schemas and errors, and shared/.

    sse        Server-Sent Events
    ndjson     one JSON event per line, for scripts
    websocket  the session's socket: one JSON message per event, and runs, cancels, answers from the client

The protocols of others (the AI SDK, AG-UI, the Responses API, MCP, A2A, LangGraph) are packages of
gateway/protocols/, each a renderer of the reducer's operations (gateway/reading/renderer.py).
"""
