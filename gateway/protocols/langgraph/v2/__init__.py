"""LangGraph's v2 Agent Streaming Protocol: commands, and a thread's events as channels over SSE or one
WebSocket. May import what its package may, and its package's top modules
(gateway/protocols/langgraph/); never v1/.

render    the v2 protocol's events, from the reducer's operations
feed      one v2 event stream of a thread: where it starts, its envelopes as they come
commands  the v2 commands (run.start, input.respond, input.inject, state.get, agent.getTree)
socket    the v2 WebSocket conversation: commands and subscriptions on one socket
routes    the v2 endpoints: commands, the SSE event stream, the WebSocket
"""
