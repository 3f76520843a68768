"""The Prometheus exposition both processes serve at `/metrics`."""

import prometheus_client
from prometheus_client.exposition import choose_encoder


def exposition(accept: str) -> tuple[bytes, str]:
    """Every metric, and its media type: OpenMetrics when the scraper's `Accept` asks for it (the only
    format that carries exemplars: the trace ids of docs/observability.md), else Prometheus text."""
    encode, media_type = choose_encoder(accept)
    return encode(prometheus_client.REGISTRY), media_type
