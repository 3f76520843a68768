"""The Vercel AI SDK (`useChat`):

requests       what a chat request says, and the conversation it shows (gateway/commands/branching.py)
render         the UI message stream, from a run's stored events
routes         the package's router: the chat endpoints over HTTP (DefaultChatTransport), and socket_routes'
socket         the WebSocketChatTransport conversation: many chat requests over one socket
socket_routes  the socket's endpoint, included by routes
"""
