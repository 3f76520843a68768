"""The Lua scripts' contracts (one typed class per script) and the runner that calls them."""
