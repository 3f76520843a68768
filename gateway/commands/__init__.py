"""What a client asks that changes a session, whichever route or socket it comes by: a turn (a run
queued), an answer to a run's question, and where a new session's webhooks go."""
