"""gateway/routes/: the sessions' routes."""
