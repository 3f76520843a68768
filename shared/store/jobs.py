"""The arq job that runs a session's run, and its wire format.

The gateway queues jobs by name from Lua scripts (`queue_job` in lua/lib/jobs.lua, through
`push_job`, writes arq 0.28's job layout), so it never imports the worker. Jobs are JSON, not arq's
default pickle: a script can write them, and a job payload can never execute code when it is read.
"""

import json
from typing import Any

RUN_JOB = "run_agent"
# arq's default lifetime of a queued job that no worker picked up (arq.constants.expires_extra_ms).
JOB_TTL_MS = 86_400_000


def serialize(obj: dict[str, Any]) -> bytes:
    # arq also serialises job results, which may hold an exception: write it as its repr.
    return json.dumps(obj, separators=(",", ":"), default=repr).encode()


def deserialize(raw: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(raw)
    return value
