"""LangGraph's Agent Server API (`langgraph-sdk`, `@langchain/langgraph-sdk`), mounted at `/langgraph`:

assistants  each catalog agent an assistant (`graph_id` its name), with a stable id
threads     a thread is a session (the chat of its `thread_id`): its JSON, status, state and history
state       `values.messages` as LangChain message dicts, from the session's events; the message ids
runs        a run's body (`RunCreate`), starting one (or resuming one by `command.resume`), its JSON
render      the v1 stream: a run's events as SSE frames of the modes asked, ids from the session's seq
access      who calls (an API key or chat token, as a bearer or `x-api-key`), and the paths' ids
routes      the v1 routes of assistants and threads (`router`, which includes run_routes')
run_routes  the v1 routes of runs: start, stream, wait, join, cancel; a thread's stream
"""
