"""LangGraph's Agent Server API (`langgraph-sdk`, `@langchain/langgraph-sdk`), mounted at `/langgraph`:

assistants  each catalog agent an assistant (`graph_id` its name), with a stable id
threads     a thread is a session (the chat of its `thread_id`): its JSON, status, state and history
state       `values.messages` as LangChain message dicts, from the session's events; the message ids
runs        a run's body (`RunCreate`), starting one (or resuming one by `command.resume`), its JSON
render      the v1 stream: a run's events as SSE frames of the modes asked, ids from the session's seq
access      who calls (an API key or chat token, as a bearer or `x-api-key`), and the paths' ids
routes      the v1 routes of assistants and threads (`router`, which includes run_routes')
run_routes  the v1 routes of runs: start, stream, wait, join, cancel; a thread's stream
v2_render   the v2 Agent Streaming Protocol's events, from the reducer's operations
v2_feed     one v2 event stream of a thread: where it starts, its envelopes as they come
v2_commands the v2 commands (run.start, input.respond, input.inject, state.get, agent.getTree)
v2_socket   the v2 WebSocket conversation: commands and subscriptions on one socket
v2_routes   the v2 endpoints: commands, the SSE event stream, the WebSocket
"""
