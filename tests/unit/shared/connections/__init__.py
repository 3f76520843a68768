"""shared/connections/: the joiner and what an outage is."""
