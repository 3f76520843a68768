"""AG-UI (CopilotKit, `@ag-ui/client`):

render  AG-UI events, from a session's stored events
routes  the endpoints HttpAgent is pointed at
"""
