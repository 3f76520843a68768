"""The wire protocols a session's stream is served in, one module each and interchangeable: each
turns the feed's batches of stored events into its protocol's bytes (`Encoding`, in base.py).

    sse          tokentail's Server-Sent Events (the stored JSON spliced in as it is)
    ndjson       one JSON event per line, for scripts
    websocket    one JSON message per event, on the session's socket
    translation  what the chat UI protocols share: a pure function of the stored events
    ai_sdk       the Vercel AI SDK's UI message stream (useChat)
    ag_ui        AG-UI (CopilotKit, @ag-ui/client)
"""
