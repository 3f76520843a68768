"""gateway/access/: session ids, stream tokens and the limits."""
