"""worker/writes/: the event writer, the lease keeper, the write journal and the writes under a run's lease."""
