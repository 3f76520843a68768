"""shared/store/: keys and lanes, reads, and the scripts through their contracts (and scripts/, lua/lib/)."""
