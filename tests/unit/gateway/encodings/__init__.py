"""gateway/encodings/: tokentail's SSE and NDJSON framings."""
