"""The wire protocols a session's stream is served in, one module each: each turns the feed's batches
of stored events into its protocol's bytes (`Encoding`, gateway/reading/response.py).

    sse            tokentail's Server-Sent Events (the stored JSON spliced in as it is)
    ndjson         one JSON event per line, for scripts
    websocket      the session's socket: one JSON message per event, and runs, cancels, answers from the client
    renderer       what the other protocols share: each renders the reducer's operations
                   (gateway/reading/reducer.py), which decide once what a client is shown
    ai_sdk         the Vercel AI SDK's UI message stream (useChat), over HTTP
    ai_sdk_socket  the same, over the SDK's WebSocketChatTransport
    ag_ui          AG-UI (CopilotKit, @ag-ui/client)
    responses      OpenAI's Responses API stream events
"""
