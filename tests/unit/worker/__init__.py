"""The worker's tests, a room per room of worker/; here, the event sink, the running runs and the per-tenant metrics."""
