"""LangGraph's v1 Agent Server API: the routes `langgraph-sdk` and `@langchain/langgraph-sdk`
call, and the stream of modes they read. May import what its package may, and its package's top
modules (gateway/protocols/langgraph/); never v2/.

render      the v1 stream: a run's events as SSE frames of the modes asked, ids from the session's seq
routes      the v1 routes of assistants and threads (`router`, which includes run_routes')
run_routes  the v1 routes of runs: start, stream, wait, join, cancel; a thread's stream
"""
