"""The summary at the end of bench/bench.py: the headline figures side by side, with how many
times better tokentail is than each peer; the latency-versus-load curve; each process's CPU per
1,000 tokens by level; and issue 53's goals, each met or not."""

import math
from collections.abc import Callable
from typing import Any

import starts

PEER = "vercel-rs"  # what the goals compare with: Vercel's transport


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
    aof: tuple[str, ...] = ("no",),
    against_baseline: dict[str, Any] | None = None,
    baseline: str | None = None,
    starts_against_baseline: dict[str, Any] | None = None,
    absolute_against_baseline: dict[str, Any] | None = None,
) -> list[Goal]:
    """Issue 83's goals, each with this run's figures: met, not met, or not measured. `aof`: the AOF
    modes tokentail ran with (the first under its own name); `absolute_against_baseline`: its memory per
    idle stream, its backlog's resume and its reconnect storm beside `--baseline`'s
    (bench.idle_and_resume_against), measured in this run. `against_baseline` and
    `starts_against_baseline` (CPU per token event and per start beside `--baseline`'s) are steps of the
    history, not goals: printed apart (`against`)."""
    ours = results.get("tokentail")
    if ours is None:
        return [("every goal", "tokentail not in --systems", "not measured")]
    by_aof = {aof[0]: ours} | {mode: results[f"tokentail (AOF {mode})"] for mode in aof[1:]}
    return [
        start_rate(ours, results.get(PEER)),
        cpu_per_start(ours, results.get(PEER)),
        *streams_held(ours, results),
        *cpu_per_token(by_aof, results.get(PEER)),
        loop_lag(ours),
        *no_worse(absolute_against_baseline, baseline),
    ]


def against(
    against_baseline: dict[str, Any] | None, starts_against_baseline: dict[str, Any] | None, baseline: str | None
) -> list[tuple[str, str]]:
    """This tree's CPU per token event and per start beside `--baseline`'s, by process, measured in this run."""
    rows = []
    if against_baseline is not None:
        for role, what in (("producer", "worker CPU per 1k tokens"), ("redis", "Redis CPU per appended event"),
                           ("gateway", "gateway CPU per delivered event")):  # fmt: skip
            after, before = against_baseline["after"][role], against_baseline["before"][role]
            rows.append((what, f"{after:.4g} against {before:.4g} ({after / before:.2f}x)"))
    if starts_against_baseline is not None:
        after, before = (sum(starts_against_baseline[side].values()) for side in ("after", "before"))
        rows.append(("CPU per start, all processes", f"{after:.2f} against {before:.2f} ms ({after / before:.2f}x)"))
    return [(f"{what}, against {baseline}", value) for what, value in rows]


def streams_held(ours: dict[str, Any], results: dict[str, Any]) -> list[Goal]:
    """Streams held >= 1.2x Vercel's transport in a burst, >= 1.5x with starts spread."""
    out = []
    for label, peer, kind, bound in (
        (f"streams held (burst start) >= 1.2x {PEER}", PEER, "levels", 1.2),
        (f"streams held (starts spread) >= 1.5x {PEER}", PEER, "spread", 1.5),
    ):
        theirs = results.get(peer)
        try:
            a, b = held_of(ours, kind), held_of(theirs, kind)  # type: ignore[arg-type]
        except (KeyError, TypeError):
            out.append((label, f"{peer} not measured", "not measured"))
            continue
        if not b:  # the peer held not even the first level: no ratio says anything
            out.append((label, f"{a} against {b}", "not measured"))
            continue
        out.append((label, f"{a} against {b} ({a / b:.2f}x)", verdict(a >= bound * b)))
    return out


LAG_BOUND_S, LAG_LEVELS = 0.25, 2500  # no process's loop later than this, at any level up to this many streams


def loop_lag(ours: dict[str, Any]) -> Goal:
    """No tokentail process's event loop lags more than 250 ms at any level up to 2,500 streams (burst,
    spread, and the search for the first miss)."""
    label = f"no tokentail process's event loop lags more than {LAG_BOUND_S * 1000:.0f} ms up to {LAG_LEVELS} streams"
    levels = [
        level
        for kind in ("levels", "spread")
        for level in levels_of(ours, kind) + (ours.get("bisection", []) if kind == "levels" else [])
        if level["streams"] <= LAG_LEVELS and level.get("loop_lag_worst_s")
    ]
    if not levels:
        return (label, "no level measured it", "not measured")
    worst = max(levels, key=lambda level: max(level["loop_lag_worst_s"].values()))
    lags = ", ".join(f"{role} <= {lag:g} s" for role, lag in worst["loop_lag_worst_s"].items())
    biggest = max(worst["loop_lag_worst_s"].values())
    return (label, f"worst at {worst['streams']} streams: {lags}", verdict(biggest <= LAG_BOUND_S))


def held_of(figures: dict[str, Any], kind: str) -> int:
    return int((figures if kind == "levels" else figures["spread"])["streams_held"])


def cpu_per_token(by_aof: dict[str, dict[str, Any]], theirs: dict[str, Any] | None) -> list[Goal]:
    """Whole system CPU per 1k tokens at 200 and 400 streams <= 0.8x Vercel's, with tokentail's AOF
    `everysec` (and each other mode measured)."""
    out = []
    for mode, ours in by_aof.items():
        for count in (200, 400):
            label = f"whole system CPU per 1k tokens at {count} streams, AOF {mode}: <= 0.8x {PEER}"
            mine, peer = level_of(ours, count), level_of(theirs, count)
            if mine is None or peer is None:
                out.append((label, f"no level of {count} streams for both", "not measured"))
                continue
            a, b = mine["system_s_per_1k_tokens"]["median"], peer["system_s_per_1k_tokens"]["median"]
            out.append((label, f"{a:.4f} against {b:.4f} s ({a / b:.2f}x)", verdict(a <= 0.8 * b)))
    return out


def cpu_per_start(ours: dict[str, Any], theirs: dict[str, Any] | None) -> Goal:
    """CPU per start, all processes together, <= 1.2x Vercel's, at the start ladder's second rate."""
    label = f"CPU per start, all processes, <= 1.2x {PEER}"
    try:
        a, b = (sum(figures["starts"]["cpu_ms_per_start"].values()) for figures in (ours, theirs))  # type: ignore[union-attr]
        rates = ours["starts"]["cpu_rate"], theirs["starts"]["cpu_rate"]  # type: ignore[index]
    except (KeyError, TypeError):
        return (label, "not measured for both", "not measured")
    value = f"{a:.2f} against {b:.2f} ms at {rates[0]}/{rates[1]} starts/s ({a / b:.2f}x)"
    return (label, value, verdict(a <= 1.2 * b))


def start_rate(ours: dict[str, Any], theirs: dict[str, Any] | None) -> Goal:
    """The sustained start rate >= 1.0x Vercel's."""
    label = f"sustained start rate >= 1.0x {PEER}"
    try:
        a, b = ours["starts"]["rate_held"], theirs["starts"]["rate_held"]  # type: ignore[index]
    except (KeyError, TypeError):
        return (label, "not measured for both", "not measured")
    if not b:
        return (label, f"{a}/s against {b}/s", "not measured")
    return (label, f"{a}/s against {b}/s ({a / b:.2f}x)", verdict(a >= b))


def no_worse(figures: dict[str, Any] | None, baseline: str | None) -> list[Goal]:
    """Memory per idle open stream, the resume of a 10,000-event backlog and the reconnect storm no
    worse than `baseline`'s (within a tenth: what two runs of one code differ by; the storm with
    nothing lost or repeated), measured in this run."""
    labels = (
        ("kb_per_stream", "gateway memory per idle open stream", "KB"),
        ("resume_last_ms", "resume of a backlog: last event", "ms"),
        ("storm_caught_up_s", "reconnect storm: all caught up", "s"),
    )
    if figures is None:
        return [(f"{what}: no worse than main's", "needs --baseline main", "not measured") for _, what, _ in labels]
    out = []
    for key, what, unit in labels:
        a, b = figures["after"][key], figures["before"][key]
        ok = a <= 1.1 * b and (key != "storm_caught_up_s" or not figures["after"]["storm_lost_or_repeated"])
        value = f"{a:.2f} against {b:.2f} {unit} ({a / b:.2f}x)"
        out.append((f"{what}: no worse than {baseline}'s", value, verdict(ok)))
    return out
