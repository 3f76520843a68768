"""The stateless HTTP gateway: REST to queue runs, and each session's stream to clients, resumable.

app, server, protocol   the FastAPI app, uvicorn with its bounds, the HTTP protocol
body_limit, cors        request bodies bounded; which other origins' pages may call, and why not
deps, schemas, errors   FastAPI wiring, request and response bodies, errors as JSON
access/                 who is calling and what they may do: API keys, stream tokens, limits, ids
reading/                a session's events from Redis to one client: the hub, feeds, the response
encodings/              one module per wire protocol: SSE, NDJSON, WebSocket, AI SDK, AG-UI
commands/               what changes a session: turns, answers to questions, webhook URLs
routes/                 the HTTP and WebSocket endpoints, one module per API (none imports another)
"""
