"""A2A 1.0:

render   the task events, from a run's stored events
tasks    what a request asks of tokentail's tasks: its input, an answer, the tenant's task index
handler  a2a-sdk's RequestHandler over tokentail's runs
dispatch the agent cards and a2a-sdk's dispatchers (JSON-RPC, HTTP+JSON), imported by the first A2A request
parts    what a request's handler is made of, gathered without the SDK
routes   the routes, declared at start without the SDK
"""
