"""MCP with the Tasks extension (the `mcp` extra):

render  what a run is on MCP's wire: a task, a tool result, a question
tasks   the tools and tasks over tokentail's runs, an extension of the mcp SDK's server
listen  `notifications/tasks` on `subscriptions/listen`: the tasks a client follows, told as they change
server  the mcp SDK's server, yours or tokentail's, behind tokentail's auth
routes  `/mcp`, registered at start; its first call builds the server (imports the SDK), a task holds it
"""
