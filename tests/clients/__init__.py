"""The clients the tests drive from Python: an SSE reader, the `mcp` client with the Tasks extension, and
small ports of how each protocol's real client folds what it receives (the real npm clients themselves
run in tests/node)."""
