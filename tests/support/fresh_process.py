"""A script run in a Python process of its own, on a test's Redis: what a module imports at start is
seen only in a process that imported nothing before it (the tests' own has imported everything)."""

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from tokentail.shared.plumbing.settings import Settings

ROOT = Path(__file__).parents[2]  # the repository: the script imports `tests` as this process does


async def told_by(script: str, settings: Settings, *args: str) -> Any:
    """What `script` printed last, as JSON; run with `args` as its `sys.argv[1:]`, on `settings`' Redis
    and key prefix. It must exit 0; it is killed if the test ends first."""
    env = {**os.environ, "TOKENTAIL_REDIS_URL": str(settings.redis_url), "TOKENTAIL_KEY_PREFIX": settings.key_prefix}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, *args, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    return json.loads(out.decode().strip().splitlines()[-1])
