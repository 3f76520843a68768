"""Where Redis's time goes per appended event in a steady level: `INFO commandstats` over the window.

    cd bench && ../.venv/bin/python commandstats.py --streams 400 [--ref main]

One level of `--streams` runs (the scripted model's 300 tokens at 50/s, each read by an SSE client),
tokentail's gateway and worker (this tree's, or revision REF's), on a private redis-server with AOF
`everysec`; Redis's CPU and each command's calls and time, per token event delivered, over the steady
part. A tool to find what a per-event figure is made of, not a result to quote.
"""

import argparse
import tempfile
from pathlib import Path

import baseline as baseline_tree
import compare
import levels
import systems
import uvloop
from redis.asyncio import Redis
from systems import TOKENS, Tokentail


def _stats(info: dict) -> dict[str, tuple[int, float]]:
    return {name.removeprefix("cmdstat_"): (int(v["calls"]), float(v["usec"])) for name, v in info.items()}


async def main(streams: int, ref: str | None) -> None:
    systems.CLOCK = "append"  # another revision's scripted model may not stamp its tokens
    with tempfile.TemporaryDirectory() as folder:
        with compare.redis_server(Path(folder), "everysec") as redis_server:
            system = Tokentail(redis_server)
            if ref:
                commit = baseline_tree.commit_of(ref)
                assert commit is not None
                system.tree = baseline_tree.gateway_tree(commit, Path(folder) / "tree")
            redis = Redis.from_url(redis_server.url)
            await system.restart()
            try:
                await levels.run_level(system, 50, 150)  # warm: scripts loaded, pools open
                before = _stats(await redis.info("commandstats"))
                cpu_before = await redis.info("cpu")
                run = await levels.run_level(system, streams, TOKENS)
                after = _stats(await redis.info("commandstats"))
                cpu_after = await redis.info("cpu")
            finally:
                system.stop()
                await redis.aclose()
    used = sum(float(cpu_after[k]) - float(cpu_before[k]) for k in ("used_cpu_sys", "used_cpu_user"))
    print(f"level: {run.events} token events in the window; Redis CPU over the whole level {used:.2f} s")
    print(f"Redis CPU per token event, steady window: {1e6 * run.cpu['redis'] / max(1, run.events):.1f} µs")
    rows = []
    for name, (calls, usec) in after.items():
        was = before.get(name, (0, 0.0))
        rows.append((usec - was[1], calls - was[0], name))
    whole = sum(usec for usec, _, _ in rows)
    print(
        f"commands' own time over the whole level: {whole / 1e6:.2f} s ({100 * whole / 1e6 / used:.0f}% of Redis's CPU)"
    )
    for usec, calls, name in sorted(rows, reverse=True)[:14]:
        print(f"  {name:12} {calls:8d} calls  {usec / 1e6:7.3f} s  {usec / max(1, calls):6.1f} µs/call")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=400)
    parser.add_argument("--ref")
    args = parser.parse_args()
    uvloop.run(main(args.streams, args.ref))
