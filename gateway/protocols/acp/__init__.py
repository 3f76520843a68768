"""The Agent Client Protocol (ACP: code editors as clients; `agent-client-protocol`, `@agentclientprotocol/sdk`)
at `/acp`, over Streamable HTTP and a WebSocket. May import the gateway's core and shared/; never another
protocol.

render   a session's ACP messages (updates, permission requests, a prompt's answer) from its stored events
methods  what each message a client sends does, over sessions and runs
streams  what a connection is sent: its outbox, and each of its sessions' messages, with their ids
routes   the transports: POST, GET (SSE), DELETE and the WebSocket at /acp
"""
