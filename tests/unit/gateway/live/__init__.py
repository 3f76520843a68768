"""gateway/live/: the gateway's pieces of traces and of the time to first delta."""
