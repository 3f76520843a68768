"""The arq job that runs a session's run, and its wire format.

The gateway queues jobs by name from a Lua script (see lua/queue_run.lua), so it never imports
the worker. Jobs are JSON, not arq's default pickle: a script can write them, and a job payload
can never execute code when it is read.
"""

import json
import time
from typing import Any

RUN_JOB = "run_agent"
# arq's default lifetime of a queued job that no worker picked up (arq.constants.expires_extra_ms).
JOB_TTL_MS = 86_400_000


def run_job_payload(session_id: str, run_id: str) -> str:
    # The shape of arq.jobs.serialize_job: try, function, args, kwargs, enqueue time in ms.
    return json.dumps(
        {"t": None, "f": RUN_JOB, "a": [session_id, run_id], "k": {}, "et": int(time.time() * 1000)},
        separators=(",", ":"),
    )


def serialize(obj: dict[str, Any]) -> bytes:
    # arq also serialises job results, which may hold an exception: write it as its repr.
    return json.dumps(obj, separators=(",", ":"), default=repr).encode()


def deserialize(raw: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(raw)
    return value
