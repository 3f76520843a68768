"""System calls per start, process by process: strace counts the gateway's and the worker's while starts
arrive at a rate (bench/starts.py's step). A round trip to Redis is a send and a receive or two;
a tool to find how many a start makes, not a figure to quote.

    cd bench && ../.venv/bin/python start_syscalls.py --rate 100 --seconds 10
"""

import argparse
import asyncio
import subprocess
import tempfile
from pathlib import Path

import starts
import uvloop
from systems import Tokentail

from tokentail.redis_server import RedisServer


async def main(rate: float, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as folder, RedisServer(Path(folder)) as redis:
        system = Tokentail(redis)
        await system.restart()
        try:
            idle = await starts.idle_cpu(system, 1.0)
            tracers = {
                role: subprocess.Popen(
                    ["strace", "-c", "-f", "-p", str(process.pid), "-o", f"{folder}/{role}.txt"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                for role, process in system.processes.items() if role in ("gateway", "producer")
            }  # fmt: skip
            await asyncio.sleep(1.0)
            step = await starts.start_step(system, rate, seconds, idle)
            for tracer in tracers.values():
                tracer.terminate()
                tracer.wait()
            print(f"{step['starts']} starts")
            for role in tracers:
                print(f"== {role}: calls per start")
                for line in Path(f"{folder}/{role}.txt").read_text().splitlines()[2:-2]:
                    parts = line.split()
                    if len(parts) >= 5 and parts[3].isdigit():
                        calls, name = int(parts[3]), parts[-1]
                        if calls / step["starts"] >= 0.5:
                            print(f"  {name:16} {calls / step['starts']:6.1f}")
        finally:
            system.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    uvloop.run(main(args.rate, args.seconds))
