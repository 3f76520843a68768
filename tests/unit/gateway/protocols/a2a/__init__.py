"""gateway/protocols/a2a/: A2A's task events from a run's stored events."""
