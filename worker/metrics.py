"""The worker's Prometheus metrics, served with its health check (`worker/process/probe.py`).

Labels take a few fixed values each: provider (`openai`, `anthropic`, `openai-compatible`,
`scripted`, or `custom` for your own agent code), event type, outcome, error kind.
"""

from prometheus_client import Counter, Gauge, Histogram

# From 5 ms to 2 min: a wake-up pickup takes milliseconds; a backlog or a slow model, seconds.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

QUEUE_WAIT = Histogram(
    "tokentail_queue_wait_seconds", "From a run's enqueue to its start on a worker", buckets=_LATENCY_BUCKETS
)
LINE_WAIT = Histogram(
    "tokentail_tenant_line_wait_seconds",
    "From a run's job joining its tenant's line (queued, or resumed after answers) to its turn"
    " (shared/features/admission.py)",
    buckets=(*_LATENCY_BUCKETS, 300, 600, 1800),
)
# Every worker reads the same figures, of the whole deployment: take the max across workers, not the sum.
TENANT_RUNS = Gauge(
    "tokentail_tenant_runs",
    "Runs per tenant, waiting in its line or running (holding a slot); the top tenants by both, the rest as `other`",
    ["tenant", "state"],
)
TIME_TO_FIRST_TOKEN = Histogram(
    "tokentail_time_to_first_token_seconds",
    "From a run's start on a worker to its first text",
    ["provider"],
    buckets=_LATENCY_BUCKETS,
)
TOKENS = Counter("tokentail_tokens", "Text chunks streamed by models and agents (a token or a few each)", ["provider"])
EVENTS_APPENDED = Counter("tokentail_events_appended", "Events appended to session streams", ["event"])
ACTIVE_RUNS = Gauge("tokentail_active_runs", "Runs this worker is running")
RUNS = Counter(
    "tokentail_runs",
    "Run attempts ended, by outcome (completed, failed, cancelled, handed_over, lease_lost, blocked_loop)",
    ["outcome"],
)
TAKEOVERS = Counter("tokentail_takeovers", "Runs started again as a later attempt, after a crash or a hand-over")
PROVIDER_ERRORS = Counter(
    "tokentail_provider_errors", "Errors from model providers, retried or not", ["provider", "kind"]
)
WEBHOOK_DELIVERIES = Counter(
    "tokentail_webhook_deliveries",
    "Webhook delivery attempts, by outcome (delivered, failed: retried later, gave_up, not_allowed)",
    ["outcome"],
)
WEBHOOK_DELAY = Histogram(
    "tokentail_webhook_delay_seconds",
    "From an event to its webhook's accepted delivery",
    buckets=(*_LATENCY_BUCKETS, 600, 3600),
)
ARCHIVE_CONFLICTS = Counter(
    "tokentail_archive_conflicts",
    "Archiving passes refused because a session's events differ from the archive's under the same ids",
)
LOOP_BLOCKED = Histogram(
    "tokentail_worker_loop_blocked_seconds",
    "Blocks of the worker's event loop of a second or more (a synchronous call in an agent:"
    " worker/process/watchdog.py)",
    buckets=(1, 2, 5, 10, 30, 60, 300),
)


TOP_TENANTS = 20  # the label's bound: more tenants are summed as `other`


def show_tenant_runs(figures: dict[str, tuple[int, int]]) -> None:
    """Set `tokentail_tenant_runs` from (waiting, running) per tenant: the top TOP_TENANTS by both."""
    ranked = sorted(figures.items(), key=lambda item: sum(item[1]), reverse=True)
    shown = dict(ranked[:TOP_TENANTS])
    rest = ranked[TOP_TENANTS:]
    if rest:
        shown["other"] = (sum(waiting for _, (waiting, _) in rest), sum(running for _, (_, running) in rest))
    TENANT_RUNS.clear()  # a tenant that left the top is no longer shown under its name
    for tenant, (waiting, running) in shown.items():
        TENANT_RUNS.labels(tenant, "waiting").set(waiting)
        TENANT_RUNS.labels(tenant, "running").set(running)
