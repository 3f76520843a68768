"""The summary at the end of bench/bench.py: the headline figures side by side, with how many
times better tokentail is than each peer."""

import math
from collections.abc import Callable
from typing import Any


def table(results: dict[str, Any], level: int) -> list[tuple[str, ...]]:
    """The headline figures, one row each: tokentail, each peer, and how many times better tokentail is."""

    def at(name: str) -> dict[str, Any]:
        levels = results[name]["levels"]
        return next((lv for lv in levels if lv["streams"] == level), levels[0])

    rows: list[tuple[str, Callable[[str], float], bool]] = [  # label, figure, higher is better
        ("streams held, p99 <= 100 ms (median of repeats)", lambda n: results[n]["streams_held"], True),
        (
            f"gateway CPU per delivered event, µs ({level} streams)",
            lambda n: at(n)["gateway_us_per_event"]["median"],
            False,
        ),
        (
            f"gateway CPU per 1k tokens, s ({level} streams)",
            lambda n: at(n)["gateway_s_per_1k_tokens"]["median"],
            False,
        ),
        (
            f"whole system CPU per 1k tokens, s ({level} streams)",
            lambda n: at(n)["system_s_per_1k_tokens"]["median"],
            False,
        ),
        (
            f"gateway Redis connections per open stream ({level} streams)",
            lambda n: at(n)["gateway_redis_connections_per_stream"],
            False,
        ),
        (
            f"Redis clients per open stream, all processes, INFO delta ({level} streams)",
            lambda n: at(n)["redis_clients_per_stream"],
            False,
        ),
        (
            "gateway Redis connections, idle streams open",
            lambda n: results[n]["idle"]["gateway_redis_connections"],
            False,
        ),
        (
            "Redis clients, all processes, idle streams open (INFO)",
            lambda n: results[n]["idle"]["redis_clients"],
            False,
        ),
        ("gateway memory per idle open stream, KB", lambda n: results[n]["idle"]["kb_per_stream"], False),
        (
            "one stream, many watchers: Redis reads and deliveries per event",
            lambda n: sum(results[n]["fan_out"]["per_event"].values()),
            False,
        ),
        ("resume of the backlog: first event, ms", lambda n: results[n]["resume"]["first_byte_ms"], False),
        ("resume of the backlog: last event, ms", lambda n: results[n]["resume"]["last_byte_ms"], False),
        ("start -> first token at the client, p50 ms", lambda n: results[n]["first_event"]["p50_ms"], False),
        ("start -> first token at the client, p99 ms", lambda n: results[n]["first_event"]["p99_ms"], False),
    ]
    names = list(results)
    peers = [n for n in names if not n.startswith("tokentail")] if "tokentail" in names else []
    out = [("figure", *names, *(f"tokentail vs {p}" for p in peers))]

    def value(figure: Callable[[str], float], name: str) -> float:
        try:
            return figure(name)
        except (KeyError, IndexError):  # not measured for this system (tokentail-gateway: capacity only;
            return math.nan  # Durable Streams: no Redis)

    for label, figure, higher in rows:
        values = {n: value(figure, n) for n in names}
        ratios = []
        for peer in peers:
            ours, theirs = values["tokentail"], values[peer]
            better = (ours / theirs if theirs else math.inf) if higher else (theirs / ours if ours else math.inf)
            ratios.append("n/a" if math.isnan(better) else f"{better:.2f}x")
        cells = ("n/a" if math.isnan(v) else f"{v:.0f}" if v >= 100 else f"{v:.3g}" for v in values.values())
        out.append((label, *cells, *ratios))
    return out
