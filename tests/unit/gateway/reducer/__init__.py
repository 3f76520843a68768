"""gateway/reducer/: the reducer, over one run and over a session's sub-agent tree."""
