"""A2A push notifications: each task's configs, and what a delivery of one carries.

A config (A2A's `TaskPushNotificationConfig`: a URL, a token, credentials) is checked when it is set
(its URL by the operator's allowlist, its token and credentials as the header values they become:
`PushConfig.checked`), and kept in a hash beside its session's keys, for as long as a finished
session is. Deliveries go the way tokentail's webhooks go: a session with push configs is marked
(watch_task_push.lua, or queue_run.lua for a task given one as it is made), so the events its
webhooks report (`run.completed/failed/cancelled`, `input.required`) are kept in its `hooks` list in
the same step as the event, and a worker's deliverer (worker/process/webhook_delivery.py) posts each to every
config its task has at that moment: bounded, retried, signed, to URLs the operator allows only.

The body is an A2A `StreamResponse` (`application/a2a+json`): the Task, completed, with its answer as
the `answer` artifact; else a status update (failed with the error, canceled, or input_required with
the question). The config's `authentication` goes in `Authorization` (`<scheme> <credentials>`), its
token in `X-A2A-Notification-Token`, as a2a-sdk's own sender does; the Standard Webhooks signature
headers come too, so a receiver may check who sent it.
"""

import json
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from tokentail.shared.connections.redis_clients import AnyRedis
from tokentail.shared.features.webhook_messages import Hook
from tokentail.shared.store.keys import Keys
from tokentail.shared.vocabulary.errors import InvalidInput
from tokentail.shared.vocabulary.response_ids import task_id

MAX_CONFIGS = 16  # per task: each is a post per reported event
_PRINTABLE = re.compile(r"[\x20-\x7e]+")  # what a header value may hold (RFC 9110, less obs-text)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an auth scheme (RFC 9110's token)
_WHAT = {_PRINTABLE: "printable ASCII characters only", _TOKEN: "an HTTP token (letters, digits, !#$%&'*+.^_`|~-)"}
STATES = {
    "run.completed": "TASK_STATE_COMPLETED",
    "run.failed": "TASK_STATE_FAILED",
    "run.cancelled": "TASK_STATE_CANCELED",
    "input.required": "TASK_STATE_INPUT_REQUIRED",
}


class PushConfig(BaseModel):
    """One config of a task (which its key in the hash names: a config stored before kept the task's
    id in a field of its own, `task_id`, now ignored)."""

    id: str
    url: str
    token: str = ""
    scheme: str = ""  # its authentication: `Authorization: <scheme> <credentials>`
    credentials: str = ""

    def checked(self) -> "PushConfig":
        """Itself, if its token and authentication can be sent as the header values they become;
        else InvalidInput naming the field: a value that is not printable ASCII (a non-ASCII
        letter, a line break) could never be delivered, nor a scheme that is not an HTTP token."""
        for field, value, pattern in (
            ("token", self.token, _PRINTABLE),
            ("authentication.scheme", self.scheme, _TOKEN),
            ("authentication.credentials", self.credentials, _PRINTABLE),
        ):
            if value and not pattern.fullmatch(value):
                raise InvalidInput(f"{field}: {_WHAT[pattern]}, as the header it is sent in")
        return self

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/a2a+json"}
        if self.token:
            headers["x-a2a-notification-token"] = self.token
        if self.scheme and self.credentials:
            headers["authorization"] = f"{self.scheme} {self.credentials}"
        return headers


class PushConfigs:
    """The push configs of the tasks of each session. The caller checks who may read or change them."""

    def __init__(self, redis: AnyRedis, keys: Keys, ttl_seconds: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = ttl_seconds

    async def put(self, session_id: str, run_id: str, config: PushConfig) -> None:
        key = self._keys.task_push(session_id)
        await self._redis.hset(key, f"{run_id} {config.id}", config.model_dump_json())  # type: ignore[misc]
        await self._redis.expire(key, self._ttl)

    async def get(self, session_id: str, run_id: str, config_id: str) -> PushConfig | None:
        raw = await self._redis.hget(self._keys.task_push(session_id), f"{run_id} {config_id}")  # type: ignore[misc]
        return None if raw is None else PushConfig.model_validate_json(raw)

    async def of_run(self, session_id: str, run_id: str) -> list[PushConfig]:
        stored = await self._redis.hgetall(self._keys.task_push(session_id))  # type: ignore[misc]
        prefix = f"{run_id} ".encode()
        return sorted(
            (PushConfig.model_validate_json(raw) for field, raw in stored.items() if field.startswith(prefix)),
            key=lambda config: config.id,
        )

    async def delete(self, session_id: str, run_id: str, config_id: str) -> None:
        await self._redis.hdel(self._keys.task_push(session_id), f"{run_id} {config_id}")  # type: ignore[misc]


def push_body(hook: Hook) -> bytes:
    """The StreamResponse a push of the hook's event carries."""
    data = json.loads(hook.data)
    run_id = data["run_id"]
    status: dict[str, Any] = {"state": STATES[hook.type], "timestamp": _timestamp(hook.ts_ms)}
    ids = {"contextId": hook.session_id}
    if hook.type == "run.completed":
        task: dict[str, Any] = {"id": task_id(hook.session_id, run_id), **ids, "status": status}
        if hook.output:
            task["artifacts"] = [{"artifactId": "answer", "name": "answer", "parts": [{"text": hook.output}]}]
        return _json({"task": task})
    message_id = f"{hook.type}-{hook.seq}"
    if hook.type == "run.failed":
        error = data.get("error") or {}
        text = f"{error.get('type', 'error')}: {error.get('message', '')}"
        status["message"] = {"messageId": message_id, **ids, "role": "ROLE_AGENT", "parts": [{"text": text}]}
    elif hook.type == "input.required":
        asked = {"inputId": data["input_id"], "kind": data["kind"], "schema": data.get("schema", {})}
        if data.get("call_id"):
            asked["callId"] = data["call_id"]
        parts = [{"text": data["prompt"]}, {"data": asked}]
        status["message"] = {"messageId": message_id, **ids, "role": "ROLE_AGENT", "parts": parts}
    update = {"taskId": task_id(hook.session_id, run_id), **ids, "status": status}
    return _json({"statusUpdate": update})


def _timestamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
