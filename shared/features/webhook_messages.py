"""What a webhook carries and how it is signed.

From the moment a session is made with a URL, each event a webhook reports is kept, in the same
step as the event (shared/store/lua/lib/webhooks.lua), in the session's `hooks` list until a worker delivers it
(worker/process/webhook_delivery.py). Signatures follow the Standard Webhooks scheme (standardwebhooks.com),
which libraries in most languages verify: headers `webhook-id` (the idempotency id,
`<session_id>.<event_id>`, the same on every retry), `webhook-timestamp` (Unix seconds) and
`webhook-signature` (`v1,` + base64 of HMAC-SHA256 over `<id>.<timestamp>.<body>`), with the
tenant's secret `whsec_<base64>`.

A tenant whose webhook's format is `openai` gets OpenAI's webhook events instead, which its SDKs'
`webhooks.unwrap()` verify and parse: `{"id", "object": "event", "created_at", "type", "data":
{"id": <response id>}}`, of type `response.completed` (a run's end, or a question, which ends the
response that asked it), `response.failed` or `response.cancelled`.
"""

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any, NamedTuple

from tokentail.shared.store.reads import with_output
from tokentail.shared.vocabulary.records import RunRecord
from tokentail.shared.vocabulary.response_ids import response_id

HOOKED_EVENTS = ("run.completed", "run.failed", "run.cancelled", "input.required")
OPENAI_TYPES = {
    "run.completed": "response.completed",
    "run.failed": "response.failed",
    "run.cancelled": "response.cancelled",
    "input.required": "response.completed",
}
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header of a delivery."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class Hook(NamedTuple):
    """One event a webhook reports, as its session's `hooks` list keeps it (lib/webhooks.lua's add_hook)."""

    session_id: str
    raw: bytes  # the list entry as stored: a deliverer removes exactly this one once delivered
    seq: int
    ts_ms: int
    type: str
    data: bytes
    url: str  # "" for a session with A2A push configs only
    tenant: str
    output: str | None
    segment: int | None  # the run's segment when the event came (RunRecord.segment): None in entries of older versions
    task_push: bool = False  # its session's tasks may have push configs (shared/features/a2a_push.py): entry `a2a`

    @classmethod
    def parse(cls, session_id: str, raw: bytes) -> "Hook":
        entry = json.loads(raw)
        ts = str(entry["ts"])
        return cls(
            session_id,
            raw,
            int(entry["seq"]),
            int(ts[:-3]),
            entry["type"],
            entry["data"].encode(),
            entry["url"],
            entry["tenant"],
            entry.get("output"),
            None if entry.get("segment") is None else int(entry["segment"]),
            bool(entry.get("a2a")),
        )

    @property
    def webhook_id(self) -> str:
        return f"{self.session_id}.{self.seq}"

    def body(self) -> bytes:
        data = self.data
        if self.type == "run.completed" and self.output is not None:
            data = with_output(data, self.output)
        payload: dict[str, Any] = {
            "type": self.type,
            "timestamp": self.ts_ms / 1000,
            "session_id": self.session_id,
            "event_id": str(self.seq),
            "data": json.loads(data),
        }
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

    @property
    def run_id(self) -> str:
        run_id: str = json.loads(self.data)["run_id"]
        return run_id

    @property
    def asks_more(self) -> bool:
        """An `input.required` followed by more questions asked at once (its `more`)."""
        return self.type == "input.required" and bool(json.loads(self.data).get("more"))

    def openai_body(self, run: RunRecord | None = None) -> bytes:
        """The body as OpenAI's webhook event, naming the response that ended: the run's segment the
        entry keeps (lib/webhooks.lua's add_hook). Only an entry stored by an older version lacks it: then
        `run`, the run's record, says how many answers came before (None if it is gone: the first)."""
        segment = 0
        if self.segment is not None:
            segment = self.segment
        elif run is not None:
            if self.type == "input.required":
                input_id = json.loads(self.data)["input_id"]
                segment = next((i for i, q in enumerate(run.asked) if q.input_id == input_id), len(run.answers))
            else:
                segment = run.segment
        payload = {
            "id": f"evt_{self.session_id}_{self.seq}",
            "object": "event",
            "created_at": self.ts_ms // 1000,
            "type": OPENAI_TYPES[self.type],
            "data": {"id": response_id(self.session_id, self.run_id, segment)},
        }
        return json.dumps(payload, separators=(",", ":")).encode()
