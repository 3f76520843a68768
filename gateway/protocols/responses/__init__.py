"""OpenAI's Responses API. May import the gateway's core (access/, live/, reducer/, reading/,
commands/, deps, schemas, errors, socket_tasks) and shared/; never another protocol.

requests  what a request asks of tokentail: its body, its input, the run it becomes
render    the stream events, from a run's stored events
output    a response's `output` items, and the events of each
follow    one response followed from its run's events: what the HTTP route and the socket share
finished  the frames of responses that ended, kept per gateway: a later resume is a slice of them
socket    the WebSocket mode's conversation: many responses over one socket
steering  `response.steer` in WebSocket mode, on tokentail's steers
routes    the package's router: the endpoints, for the official SDKs unchanged
"""
