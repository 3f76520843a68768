"""The process's plumbing, for the gateway's and the worker's processes alike: what they are told
(settings, Redis URLs), and what they tell (logs, traces, metrics). May import the vocabulary.

settings     all configuration, from `TOKENTAIL_*` environment variables
redis_urls   a Redis URL: one server's, or a Sentinel setup's
logs         text or JSON log lines, with the session and run in context
tracing      OpenTelemetry, off unless its own variables configure it
run_spans    the spans of a run that any process may write
prometheus   the exposition both processes serve at /metrics
gc_tuning    garbage collection tuned for a long-running server
loop_lag     how late the event loop runs what is due (a tick, its lateness observed)
"""
