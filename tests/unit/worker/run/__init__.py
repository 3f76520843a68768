"""worker/run/ (and recovery/): the loop, attempts, context, children, retries, usage, traces, takeovers."""
