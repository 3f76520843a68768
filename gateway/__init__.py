"""The stateless HTTP gateway: REST to queue runs, and each session's stream to clients, resumable.
It imports shared/, never the worker; its parts import only those below them (tests/unit/project/test_layout.py
`GATEWAY_PARTS`):

app, server, protocol   the FastAPI app, uvicorn with its bounds, the HTTP protocol
hot_routes              the requests every stream starts with, answered without FastAPI's routing
body_limit, cors        request bodies bounded; which other origins' pages may call, and why not
deps, schemas, errors   FastAPI wiring, request and response bodies, errors as JSON
metrics, api_docs       the gateway's Prometheus metrics (/metrics); the API's docs pages (/docs, /redoc)
socket_tasks            what the WebSocket conversations that serve requests as tasks share
access/                 who is calling and what they may do: API keys, stream tokens, limits, ids, peers
live/                   the live reading: the process's one reader of Redis (the hub) and its chunks
reducer/                stored events made into the operations every renderer writes (pure)
reading/                a session's events to one client: feeds, snapshots, the response, the
                        renderer base every other protocol renders with
encodings/              tokentail's own framings: SSE, NDJSON, its WebSocket
commands/               what changes a session: turns, answers to questions, forks, deletes, tasks
routes/                 tokentail's own endpoints, one module per API (none imports another)
protocols/              the protocols of others, a package each: AI SDK, AG-UI, Responses, MCP, A2A,
                        LangGraph
admin/                  the operator console: its admin API and the page's route
static/                 the browser's files (no Python), served at /static/
"""
