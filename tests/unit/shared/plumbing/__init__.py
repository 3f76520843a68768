"""shared/plumbing/: settings, logs, tracing and the event loop's lag."""
