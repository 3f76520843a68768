"""Code shared by the gateway and the worker: settings, Redis keys, events and the stream store."""
