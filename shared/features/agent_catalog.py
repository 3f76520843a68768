"""What each agent of a deployment says about itself, for the agent protocols (MCP's tools, A2A's
agent cards): a description, the arguments it takes, whether a call of it runs as a task.

The gateway never imports an agent, so the workers, which do, publish these as they start (one hash
in Redis, `Keys.agents`), and a gateway reads them there. An agent the gateway's settings name that
no worker has published yet (none started) is shown with the defaults, until one has: a gateway
keeps what a worker published, never that nothing was (`AgentDirectory`).
"""

import json
import math
import time
from typing import Any, Literal

from pydantic import BaseModel, Field

from tokentail.shared.store.keys import Keys
from tokentail.shared.vocabulary.errors import InvalidInput

TaskSupport = Literal["optional", "required", "forbidden"]  # MCP's `execution.taskSupport`

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "the message to the agent"}},
    "required": ["input"],
}


class AgentInfo(BaseModel):
    name: str
    description: str = ""
    # The JSON Schema of a call's arguments; the default: one string, `input`, the run's input.
    input_schema: dict[str, Any] = Field(default_factory=lambda: dict(INPUT_SCHEMA))
    # Whether a protocol's call of it becomes a task the client polls ("optional": when it does not
    # end at once), always ("required"), or never: the call waits for its answer ("forbidden").
    task_support: TaskSupport = "optional"

    def model_post_init(self, context: Any, /) -> None:
        # jsonschema (~0.08 s of a core) is imported by the first schema checked, not at start.
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(self.input_schema)
        except SchemaError as exc:
            raise ValueError(f"agent {self.name!r}: input_schema is not a JSON Schema: {exc.message}") from None

    @property
    def takes_text(self) -> bool:
        """Its arguments are the default: the run's input is the text itself."""
        return self.input_schema == INPUT_SCHEMA

    def input_text(self, arguments: dict[str, Any]) -> str:
        """The run's input for a call with `arguments`: the text, for the default schema; else the
        arguments as JSON (the agent reads them as `ctx.arguments`). Checked against the schema."""
        from jsonschema import Draft202012Validator  # on the first check, not at start (model_post_init)
        from jsonschema.exceptions import best_match

        error = best_match(Draft202012Validator(self.input_schema).iter_errors(arguments))
        if error is not None:
            where = "".join(f"[{part!r}]" for part in error.absolute_path) or "the arguments"
            raise InvalidInput(f"agent {self.name!r}: {where} do not match its input schema: {error.message}")
        if self.takes_text:
            return str(arguments["input"])
        return json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)


def arguments_of(input_text: str) -> dict[str, Any]:
    """A run's arguments, as `AgentInfo.input_text` made its input of them: a JSON object, or else
    the text (a run queued with text, by the REST API or for an agent that takes text)."""
    try:
        value = json.loads(input_text)
    except ValueError:
        return {"input": input_text}
    return value if isinstance(value, dict) else {"input": input_text}


async def publish(redis: Any, keys: Keys, infos: list[AgentInfo]) -> None:
    """A worker's agents, as it starts: the latest worker's word on each name wins."""
    if infos:
        await redis.hset(keys.agents, mapping={info.name: info.model_dump_json() for info in infos})


class AgentDirectory:
    """The deployment's agents as a gateway sees them: the names its settings allow, each with what
    a worker published about it, else the defaults.

    What was published is read again at most every `REFRESH_SECONDS` (it changes only when workers
    start with other agents); while any name has nothing published, the catalog is read on each use
    (one HMGET), so the first worker's word counts at once. A read from before any worker started,
    kept for seconds, had a fresh gateway judge calls by the defaults after the workers published:
    a call of `slow_compute` answered at once that `input` was required, and started no run."""

    REFRESH_SECONDS = 5.0

    def __init__(self, redis: Any, keys: Keys, names: list[str]) -> None:
        self._redis, self._keys, self._names = redis, keys, names
        self._infos: dict[str, AgentInfo] = {}
        self._read_at = -math.inf  # never, or not all published: read on the next use

    async def all(self) -> list[AgentInfo]:
        if time.monotonic() - self._read_at > self.REFRESH_SECONDS:
            published = await self._redis.hmget(self._keys.agents, self._names)
            self._infos = {name: _info(name, raw) for name, raw in zip(self._names, published, strict=True)}
            self._read_at = time.monotonic() if None not in published else -math.inf
        return list(self._infos.values())

    async def get(self, name: str) -> AgentInfo:
        info = next((info for info in await self.all() if info.name == name), None)
        if info is None:
            raise InvalidInput(f"unknown agent {name!r}; available: {', '.join(sorted(self._names))}")
        return info


def _info(name: str, raw: bytes | str | None) -> AgentInfo:
    if raw is not None:
        try:
            return AgentInfo.model_validate_json(raw)
        except ValueError:  # written by another version of tokentail: the defaults, rather than nothing
            pass
    return AgentInfo(name=name)
