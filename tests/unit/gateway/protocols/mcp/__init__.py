"""gateway/protocols/mcp/: what a run is on MCP's wire."""
