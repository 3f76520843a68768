"""Where a start's CPU goes, process by process: py-spy records the gateway and the worker while
starts arrive at a rate (bench/starts.py's step), and each process's hottest functions are printed.

    cd bench && ../.venv/bin/python start_profile.py --rate 100 --seconds 15

Needs py-spy (`pip install py-spy`). A tool to find what to cut, not a figure to quote: sampling
slows the processes a little, and the figures of bench/bench.py's `start_cpu_against` are the ones
to read.
"""

import argparse
import asyncio
import collections
import subprocess
import tempfile
from pathlib import Path

import starts
import uvloop
from systems import Tokentail

from tokentail.redis_server import RedisServer


def hottest(raw: Path, top: int) -> list[str]:
    own: collections.Counter[str] = collections.Counter()
    within: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        frames = [frame for frame in stack.split(";") if "importlib" not in frame]
        if not frames:
            continue
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            within[frame] += int(count)
    lines = [f"  {count / total:6.1%} own     {frame[:150]}" for frame, count in own.most_common(top)]
    lines += [f"  {count / total:6.1%} within  {frame[:150]}" for frame, count in within.most_common(2 * top)]
    return lines


async def main(rate: float, seconds: float, top: int) -> None:
    with tempfile.TemporaryDirectory() as folder, RedisServer(Path(folder)) as redis:
        system = Tokentail(redis)
        await system.restart()
        try:
            idle = await starts.idle_cpu(system, 2.0)
            spies = {
                role: subprocess.Popen(
                    ["py-spy", "record", "-r", "200", "-f", "raw", "-d", str(int(seconds) + 2), "--nonblocking",
                     "-p", str(process.pid), "-o", f"{folder}/{role}.txt"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                for role, process in system.processes.items() if role in ("gateway", "producer")
            }  # fmt: skip
            step = await starts.start_step(system, rate, seconds, idle)
            for spy in spies.values():
                spy.wait()
            print(f"CPU ms per start: {step['cpu_ms_per_start']}; first token p99 {step['first_token_p99_ms']:.1f} ms")
            for role in spies:
                print(f"== {role}")
                print("\n".join(hottest(Path(f"{folder}/{role}.txt"), top)))
        finally:
            system.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    uvloop.run(main(args.rate, args.seconds, args.top))
