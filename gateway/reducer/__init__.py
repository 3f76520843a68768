"""The reducer: a session's stored events made into the protocol-neutral operations every renderer
writes (gateway/reading/renderer.py, gateway/protocols/*/render.py). Pure: imports shared/'s
vocabulary and the store's event type, and no other part of the gateway.

reducer     stored events reduced to operations, with what each run shows so far (`Reducer`)
operations  the closed set of operations a reducer makes (`op.BlockAppended`, `op.RunEnded`, ...)
"""
