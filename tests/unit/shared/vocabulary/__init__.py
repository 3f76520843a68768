"""shared/vocabulary/: events, records, response ids, the run log and the run tree."""
