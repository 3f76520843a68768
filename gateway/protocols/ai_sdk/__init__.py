"""The Vercel AI SDK (`useChat`). May import the gateway's core (access/, live/, reducer/, reading/,
commands/, deps, schemas, errors, socket_tasks) and shared/; never another protocol.

requests       what a chat request says, and the conversation it shows (gateway/commands/branching.py)
render         the UI message stream, from a run's stored events
subagents      a session's sub-agent tree as the AI SDK shows one: the child run its parent's tool call
socket         the WebSocketChatTransport conversation: many chat requests over one socket
socket_routes  the socket's endpoint, included by routes
routes         the package's router: the chat endpoints over HTTP (DefaultChatTransport), and socket_routes'
"""
