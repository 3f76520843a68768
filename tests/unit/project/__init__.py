"""The repository's rules and pins (layout, shape, markers, docs, packaging, pages, Lua, borrowed) and test helpers."""
