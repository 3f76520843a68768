"""LangGraph's Agent Server API (`langgraph-sdk`, `@langchain/langgraph-sdk`), mounted at `/langgraph`:

v2_render    the v2 Agent Streaming Protocol's events, from the reducer's operations
v2_feed      one v2 event stream of a thread: where it starts, its envelopes as they come
v2_commands  the v2 commands (run.start, input.respond, input.inject, state.get, agent.getTree)
v2_socket    the v2 WebSocket conversation: commands and subscriptions on one socket
v2_routes    the v2 endpoints: commands, the SSE event stream, the WebSocket
"""
