"""A2A 1.0 (a2a-sdk's servers and clients, `@a2a-js/sdk`). May import the gateway's core (access/, live/,
reducer/, reading/, commands/, deps, schemas, errors) and shared/; never another protocol. a2a-sdk only
from the modules the first A2A request imports (dispatch, handler, render, tasks), never from routes or parts.

render   the task events, from a run's stored events
tasks    what a request asks of tokentail's tasks: its input, an answer, the tenant's task index
handler  a2a-sdk's RequestHandler over tokentail's runs
dispatch the agent cards and a2a-sdk's dispatchers (JSON-RPC, HTTP+JSON), imported by the first A2A request
parts    what a request's handler is made of, gathered without the SDK
routes   the routes, declared at start without the SDK
"""
