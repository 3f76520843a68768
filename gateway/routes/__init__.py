"""tokentail's own API, one module per endpoint family; none imports another (what two transports
share lives in the core). May import the gateway's access/, reading/, encodings/, commands/, deps,
schemas and errors, and shared/.

sessions        REST: create, read, fork and delete sessions; queue, steer, cancel and answer runs; tokens
events          a session's events as SSE (or NDJSON), resumable; one run's or its subtree's with `?run=`
socket          the session's WebSocket: the same events, plus runs, cancels and answers from the client
tenant_webhook  REST: the tenant's webhook URL and signing secret (API keys only)
"""
