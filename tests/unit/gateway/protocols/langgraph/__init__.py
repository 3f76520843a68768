"""gateway/protocols/langgraph/: its state, v1's and v2's streams resumed, v2's envelopes and its socket's order."""
