"""worker/tools/: `tool` and the built-in tools."""
