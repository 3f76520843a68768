"""The summary at the end of bench/bench.py: the headline figures side by side, with how many
times better tokentail is than each peer; the latency-versus-load curve; each process's CPU per
1,000 tokens by level; and issue 53's goals, each met or not."""

import math
from collections.abc import Callable
from typing import Any

import starts

PEER = "vercel-rs"  # what the goals compare with: Vercel's transport
PRODUCT_PEER = "vercel-ai"  # and the AI SDK's pipeline over it, as its users run it


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
) -> list[Goal]:
    """Issue 53's goals, each with this run's figures: met, not met, or not measured. `aof`: the AOF
    modes tokentail ran with (the first under its own name); `against_baseline`: tokentail's worker
    and Redis CPU beside `--baseline`'s, measured in this run (bench.per_token_against)."""
    ours = results.get("tokentail")
    if ours is None:
        return [("every goal", "tokentail not in --systems", "not measured")]
    by_aof = {aof[0]: ours} | {mode: results[f"tokentail (AOF {mode})"] for mode in aof[1:]}
    return [
        *streams_held(ours, results),
        *cpu_per_token(by_aof, results.get(PEER)),
        *per_token_against(against_baseline, baseline),
        per_start(ours, results.get(PEER)),
        *absolute(ours),
    ]


def streams_held(ours: dict[str, Any], results: dict[str, Any]) -> list[Goal]:
    """Streams held >= 1.0x Vercel's transport in a burst, >= 1.2x with starts spread, >= 1.5x the AI
    SDK's pipeline (burst)."""
    out = []
    for label, peer, kind, bound in (
        (f"streams held (burst start) >= 1.0x {PEER}", PEER, "levels", 1.0),
        (f"streams held (starts spread) >= 1.2x {PEER}", PEER, "spread", 1.2),
        (f"streams held (burst start) >= 1.5x {PRODUCT_PEER}", PRODUCT_PEER, "levels", 1.5),
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


def held_of(figures: dict[str, Any], kind: str) -> int:
    return int((figures if kind == "levels" else figures["spread"])["streams_held"])


def cpu_per_token(by_aof: dict[str, dict[str, Any]], theirs: dict[str, Any] | None) -> list[Goal]:
    """Whole system CPU per 1k tokens at 400 and 800 streams: <= 1.0x Vercel's with tokentail's AOF
    off, <= 1.2x with it on."""
    out = []
    for mode, ours in by_aof.items():
        bound = 1.0 if mode == "no" else 1.2
        for count in (400, 800):
            label = f"whole system CPU per 1k tokens at {count} streams, AOF {mode}: <= {bound}x {PEER}"
            mine, peer = level_of(ours, count), level_of(theirs, count)
            if mine is None or peer is None:
                out.append((label, f"no level of {count} streams for both", "not measured"))
                continue
            a, b = mine["system_s_per_1k_tokens"]["median"], peer["system_s_per_1k_tokens"]["median"]
            out.append((label, f"{a:.4f} against {b:.4f} s ({a / b:.2f}x)", verdict(a <= bound * b)))
    return out


def per_token_against(figures: dict[str, Any] | None, baseline: str | None) -> list[Goal]:
    """Worker CPU per 1k tokens <= 0.5x `baseline`'s, Redis CPU per appended event <= 0.55x, both
    measured in this run."""
    labels = (("producer", "worker CPU per 1k tokens", 0.5), ("redis", "Redis CPU per appended event", 0.55))
    if figures is None:
        return [(f"{what} <= {bound}x main's", "needs --baseline main", "not measured") for _, what, bound in labels]
    out = []
    for role, what, bound in labels:
        ratio = figures["ratio"][role]
        value = f"{figures['after'][role]:.2f} against {figures['before'][role]:.2f} ({ratio:.2f}x)"
        out.append((f"{what} <= {bound}x {baseline}'s", value, verdict(ratio <= bound)))
    return out


def per_start(ours: dict[str, Any], theirs: dict[str, Any] | None) -> Goal:
    """CPU per stream started, all processes together, <= 1.2x Vercel's (the start rate's second step)."""
    label = f"CPU per start, all processes, <= 1.2x {PEER}"
    try:
        a = sum(ours["starts"]["cpu_ms_per_start"].values())
        b = sum(theirs["starts"]["cpu_ms_per_start"].values())  # type: ignore[index]
    except (KeyError, TypeError):
        return (label, "not measured for both", "not measured")
    return (label, f"{a:.2f} against {b:.2f} ms ({a / b:.2f}x)", verdict(a <= 1.2 * b))


def absolute(ours: dict[str, Any]) -> list[Goal]:
    """Memory per idle stream, the backlog's resume."""
    out = []
    if idle := ours.get("idle"):
        kb = idle["kb_per_stream"]
        out.append(("gateway memory per idle open stream <= 15 KB", f"{kb:.1f} KB", verdict(kb <= 15)))
    if resume := ours.get("resume"):
        note = "" if resume.get("events") == 10_000 else f" ({resume.get('events')} events, not 10,000)"
        out.append(
            (
                "resume of a 10,000-event backlog: last event <= 8 ms",
                f"{resume['last_byte_ms']:.1f} ms{note}",
                verdict(resume["last_byte_ms"] <= 8),
            )
        )
    return out
