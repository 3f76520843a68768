"""The Vercel AI SDK (`useChat`):

requests       what a chat request says, and the conversation it shows (gateway/commands/branching.py)
render         the UI message stream, from a run's stored events
routes         the chat endpoints over HTTP (DefaultChatTransport)
socket         the WebSocketChatTransport conversation: many chat requests over one socket
socket_routes  its endpoint
"""
