"""LangGraph's Agent Server API (`langgraph-sdk`, `@langchain/langgraph-sdk`), mounted at `/langgraph`:
the v1 API (v1/) and the v2 Agent Streaming Protocol (v2/), over what both use, here. May import the
gateway's core (access/, live/, reducer/, reading/, commands/, deps, schemas, errors, socket_tasks) and
shared/; never another protocol. Neither version imports the other; the modules here import neither, but routes.

assistants  each catalog agent an assistant (`graph_id` its name), with a stable id
threads     a thread is a session (the chat of its `thread_id`): its JSON, status and state
checkpoints a thread's checkpoints (events at step boundaries, of every branch): its history, a run's fork
state       `values.messages` as LangChain message dicts, from the session's events; the message ids
runs        a run's body (`RunCreate`), starting one (or resuming one by `command.resume`), its JSON
access      who calls (an API key or chat token, as a bearer or `x-api-key`), and the paths' ids
routes      the package's one router: v1's routes, then v2's (the only module here that imports them)
v1/         the v1 routes of assistants, threads and runs, and their stream's render
v2/         the v2 protocol: its render, feed, commands, WebSocket and routes
"""
