"""The summary at the end of bench/bench.py: the headline figures side by side, with how many
times better tokentail is than each peer; the latency-versus-load curve; each process's CPU per
1,000 tokens by level; and issue 43's goals, each met or not."""

import math
from collections.abc import Callable
from typing import Any

import starts

# Issue 43's measure of CPU per stream started before its work, ms: the gateway's `POST /v1/sessions`
# and the stream's opening (0.6-0.95 and 0.70-0.78), the worker's run through arq (0.85-1.2), Redis
# (0.35-0.65), each the middle of its range. Its goal is half of each. (Measured with py-spy and /proc
# on the levels of that day, not as bench/starts.py does: `--start-cpu-before` takes a run's own.)
START_CPU_BEFORE_MS = {"gateway": 1.5, "producer": 1.0, "redis": 0.5}
PEER = "vercel-rs"  # what the goals compare with


def storm_lost(storm: dict[str, Any]) -> float:
    """Clients that did not resume at the id after their last, and ids out of order after it."""
    return float(storm["clients"] - storm["resumed_exactly"] + storm["out_of_order"])


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
        (
            f"sustained start rate, starts/s with first token p99 <= {starts.FIRST_TOKEN_BOUND_MS} ms",
            lambda n: results[n]["starts"]["rate_held"],
            True,
        ),
        *(
            (
                f"CPU per start, {role}, ms (the start rate's second step)",
                lambda n, role=role: results[n]["starts"]["cpu_ms_per_start"][role],
                False,
            )
            for role in ("gateway", "producer", "redis")
        ),
        ("streams held, starts spread (10 s; --quick: 1.5 s)", lambda n: results[n]["spread"]["streams_held"], True),
        ("reconnect storm: every client caught up, s", lambda n: results[n]["storm"]["all_caught_up_s"], False),
        ("reconnect storm: clients that lost or repeated an event", lambda n: storm_lost(results[n]["storm"]), False),
    ]
    names = list(results)
    peers = [n for n in names if not n.startswith("tokentail")] if "tokentail" in names else []
    out = [("figure", *names, *(f"tokentail vs {p}" for p in peers))]

    def value(figure: Callable[[str], float], name: str) -> float:
        try:
            return figure(name)
        except (KeyError, IndexError, TypeError):  # not measured for this system (tokentail-gateway:
            return math.nan  # capacity only; Durable Streams: no Redis, no storm)

    for label, figure, higher in rows:
        values = {n: value(figure, n) for n in names}
        ratios = []
        for peer in peers:
            ours, theirs = values["tokentail"], values[peer]
            if math.isnan(ours) or math.isnan(theirs):
                better = math.nan
            elif ours == theirs:  # both 0 (nothing lost by either), or both unlimited
                better = 1.0
            elif higher:
                better = ours / theirs if theirs else math.inf
            else:
                better = theirs / ours if ours else math.inf
            ratios.append("n/a" if math.isnan(better) else f"{better:.2f}x")
        cells = ("n/a" if math.isnan(v) else f"{v:.0f}" if v >= 100 else f"{v:.3g}" for v in values.values())
        out.append((label, *cells, *ratios))
    return out


def levels_of(figures: dict[str, Any] | None, kind: str = "levels") -> list[dict[str, Any]]:
    """A system's levels started in a burst ("levels") or spread ("spread")."""
    if figures is None:
        return []
    return list(figures.get("levels", []) if kind == "levels" else (figures.get("spread") or {}).get("levels", []))


def level_of(figures: dict[str, Any] | None, streams: int, kind: str = "levels") -> dict[str, Any] | None:
    return next((level for level in levels_of(figures, kind) if level["streams"] == streams), None)


def curve(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Delivery delay p50 / p99 (median of the repeats) by streams, every level each system ran:
    started in a burst, then spread; and how many times lower tokentail's p99 is than each peer's."""
    names = list(results)
    peers = [n for n in names if not n.startswith("tokentail")] if "tokentail" in names else []
    spread = [n for n in names if levels_of(results[n], "spread")]
    counts = sorted(
        {lv["streams"] for n in names for kind in ("levels", "spread") for lv in levels_of(results[n], kind)}
    )
    out = [
        (
            "streams",
            *(f"{n} p50 / p99 ms" for n in names),
            *(f"{n}, spread, p50 / p99 ms" for n in spread),
            *(f"tokentail vs {p}, p99" for p in peers),
        )
    ]

    def cell(level: dict[str, Any] | None) -> str:
        return "-" if level is None else f"{level['p50_ms']['median']:.1f} / {level['p99_ms']['median']:.1f}"

    def ratio(count: int, peer: str) -> str:
        ours, theirs = level_of(results["tokentail"], count), level_of(results[peer], count)
        if ours is None or theirs is None or not ours["p99_ms"]["median"]:
            return "-"
        return f"{theirs['p99_ms']['median'] / ours['p99_ms']['median']:.2f}x"

    for count in counts:
        out.append(
            (
                str(count),
                *(cell(level_of(results[n], count)) for n in names),
                *(cell(level_of(results[n], count, "spread")) for n in spread),
                *(ratio(count, peer) for peer in peers),
            )
        )
    return out


def cpu_by_process(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """CPU seconds per 1,000 delivered tokens, each process and the whole system, at every level
    started in a burst (the steady part: median of the repeats)."""
    out = [("streams", "system", "gateway", "producer", "redis", "whole system")]
    for name, figures in results.items():
        for level in levels_of(figures):
            each = level["s_per_1k_tokens"]
            cells = (f"{each[k]:.4f}" if k in each else "-" for k in ("gateway", "producer", "redis"))
            out.append((str(level["streams"]), name, *cells, f"{level['system_s_per_1k_tokens']['median']:.4f}"))
    return out


Goal = tuple[str, str, str]  # the goal, this run's figures, and "met", "not met" or "not measured"


def verdict(ok: bool) -> str:
    return "met" if ok else "not met"


def goals(
    results: dict[str, Any],
    start_cpu_before: dict[str, float] = START_CPU_BEFORE_MS,
    against_baseline: dict[str, dict[str, float]] | None = None,
    baseline: str | None = None,
) -> list[Goal]:
    """Issue 43's goals, each with this run's figures: met, not met, or not measured. CPU per start is
    judged against `--baseline`'s, measured in this run (`against_baseline`), if given."""
    ours = results.get("tokentail")
    if ours is None:
        return [("every goal", "tokentail not in --systems", "not measured")]
    starts = per_start_against(against_baseline, baseline) if against_baseline else per_start(ours, start_cpu_before)
    return [*against_peer(ours, results.get(PEER)), *starts, *absolute(ours)]


def per_start_against(figures: dict[str, dict[str, float]], baseline: str | None) -> list[Goal]:
    """CPU per start, each process, <= half of `baseline`'s, both measured in this run."""
    out = []
    for role, ratio in figures["ratio"].items():
        label = f"CPU per start, {'worker' if role == 'producer' else role} <= 0.5x {baseline}'s"
        value = f"{figures['after'][role]:.2f} against {figures['before'][role]:.2f} ms ({ratio:.2f}x)"
        out.append((label, value, verdict(ratio <= 0.5)))
    return out


def against_peer(ours: dict[str, Any], theirs: dict[str, Any] | None) -> list[Goal]:
    """Streams held (burst start) >= 1.0x, whole system CPU per 1k tokens <= 1.25x at 400 and 800
    streams, gateway CPU per delivered event <= 1.0x at every level both ran."""
    labels = [
        f"streams held (burst start) >= 1.0x {PEER}",
        *(f"whole system CPU per 1k tokens at {count} streams <= 1.25x {PEER}" for count in (400, 800)),
        f"gateway CPU per delivered event <= {PEER} at every level",
    ]
    if theirs is None:
        return [(label, f"{PEER} not in --systems", "not measured") for label in labels]
    a, b = ours["streams_held"], theirs["streams_held"]
    out = [(labels[0], f"{a} against {b} ({a / b if b else math.inf:.2f}x)", verdict(a >= b))]
    for label, count in zip(labels[1:3], (400, 800), strict=True):
        mine, peer = level_of(ours, count), level_of(theirs, count)
        if mine is None or peer is None:
            out.append((label, f"no level of {count} streams for both", "not measured"))
            continue
        a, b = mine["system_s_per_1k_tokens"]["median"], peer["system_s_per_1k_tokens"]["median"]
        out.append((label, f"{a:.4f} against {b:.4f} s ({a / b:.2f}x)", verdict(a <= 1.25 * b)))
    ratios = [
        (level["streams"], level["gateway_us_per_event"]["median"] / peer["gateway_us_per_event"]["median"])
        for level in levels_of(ours)
        if (peer := level_of(theirs, level["streams"])) is not None
    ]
    text = ", ".join(f"{count}: {ratio:.2f}x" for count, ratio in ratios) or "no level both ran"
    out.append((labels[3], text, verdict(all(r <= 1 for _, r in ratios)) if ratios else "not measured"))
    return out


def per_start(ours: dict[str, Any], start_cpu_before: dict[str, float]) -> list[Goal]:
    """CPU per start, each process, <= half of what it was before issue 43's work."""
    starts_figures = ours.get("starts") or {}
    measured, rate = starts_figures.get("cpu_ms_per_start") or {}, starts_figures.get("cpu_rate")
    out = []
    for role, before in start_cpu_before.items():
        label = f"CPU per start, {'worker' if role == 'producer' else role} <= 0.5x {before} ms"
        if role not in measured:
            out.append((label, "-", "not measured"))
            continue
        value = measured[role]
        out.append((label, f"{value:.2f} ms ({value / before:.2f}x; at {rate} starts/s)", verdict(value <= before / 2)))
    return out


def absolute(ours: dict[str, Any]) -> list[Goal]:
    """Memory per idle stream, the backlog's resume, start -> first token."""
    out = []
    if idle := ours.get("idle"):
        kb = idle["kb_per_stream"]
        out.append(("gateway memory per idle open stream <= 15 KB", f"{kb:.1f} KB", verdict(kb <= 15)))
    if resume := ours.get("resume"):
        note = "" if resume.get("events") == 10_000 else f" ({resume.get('events')} events, not 10,000)"
        for key, bound, what in (("first_byte_ms", 2, "first"), ("last_byte_ms", 8, "last")):
            out.append(
                (
                    f"resume of a 10,000-event backlog: {what} event <= {bound} ms",
                    f"{resume[key]:.1f} ms{note}",
                    verdict(resume[key] <= bound),
                )
            )
    if first := ours.get("first_event"):
        for key, bound in (("p50_ms", 4), ("p99_ms", 8)):
            label = f"start -> first token {key.removesuffix('_ms')} <= {bound} ms"
            out.append((label, f"{first[key]:.1f} ms", verdict(first[key] <= bound)))
    return out
