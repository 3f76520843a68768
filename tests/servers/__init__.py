"""What the tests talk to or put in the way, started by the tests themselves: the fake model servers
(the OpenAI and Anthropic wire formats), a Redis Cluster, Sentinels, a private PostgreSQL, a Redis made
to fail (full, paused, cut off), an OTLP trace receiver, a webhook receiver, and an MCP server of a
user's own that tokentail serves beside the agents (loaded by name: "tests.servers.mcp_server:server")."""
