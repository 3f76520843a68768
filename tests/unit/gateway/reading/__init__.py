"""gateway/reading/: the feed, the snapshot and the filter of one run's events."""
