"""The gateway's Prometheus metrics, served at `/metrics`.

Labels take a few fixed values each (transport, gap reason, limit): never a session, run or tenant
id, which would make a time series per session.
"""

from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS = Gauge("tokentail_connections", "Open event streams", ["transport"])
CONNECTIONS_OPENED = Counter("tokentail_connections_opened", "Event streams opened", ["transport"])
RESUMES = Counter("tokentail_resumes", "Event streams opened to resume after an event id (reconnects)", ["transport"])
EVENTS_SENT = Counter("tokentail_events_sent", "Events sent to clients", ["transport"])
RESUMED_EVENTS = Counter(
    "tokentail_resumed_events", "Events replayed from the stream to clients that resumed", ["transport"]
)
SNAPSHOTS = Counter(
    "tokentail_snapshots", "Compacted catch-ups sent (one per snapshot event) to clients far behind", ["transport"]
)
GAPS = Counter("tokentail_gaps", "Gap frames sent: the asked position was no longer in the stream", ["reason"])
AUTH_FAILURES = Counter("tokentail_auth_failures", "Requests refused for their credentials", ["reason"])
RATE_LIMITED = Counter("tokentail_rate_limited", "Requests refused by a tenant limit", ["limit"])
HUB_CHANNELS = Gauge("tokentail_hub_channels", "Sessions this gateway follows live (one subscription each)")
HUB_RECONNECTS = Counter("tokentail_hub_reconnects", "Times the stream hub lost its Redis connection")
HUB_CATCH_UPS = Counter(
    "tokentail_hub_catch_ups",
    "Live followers sent back to reading Redis: a slow client (behind), a missed notification (hole), "
    "or the hub's connection came back (reconnect)",
    ["reason"],
)
FIRST_DELTA = Histogram(
    "tokentail_first_delta_seconds",
    "From the request that queued a run, received by a gateway, to the run's first text delta written to a "
    "client by any gateway: the time to first token a user feels (once per run; an exemplar names its trace)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 30, 60, 120),
)
