"""gateway/commands/: the writes and steers on the write side, branching, and answers checked before they are stored."""
