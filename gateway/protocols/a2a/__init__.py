"""A2A 1.0:

render   the task events, from a run's stored events
tasks    what a request asks of tokentail's tasks: its input, an answer, the tenant's task index
handler  a2a-sdk's RequestHandler over tokentail's runs
routes   the agent cards and a2a-sdk's dispatchers (JSON-RPC, HTTP+JSON)
"""
