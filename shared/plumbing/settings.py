"""All configuration, read from `TOKENTAIL_*` environment variables: a class per concern (where Redis is,
sessions, runs, access, the gateway, webhooks, workers, providers, wake-ups, admission, children, the
console, proxies), and `Settings`, every one of them, which the processes read."""

import ipaddress
import os
import re
from functools import lru_cache
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    RedisDsn,
    SecretStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from tokentail.shared.plumbing.redis_urls import sentinel_setup

_REDIS_DSN: TypeAdapter[RedisDsn] = TypeAdapter(RedisDsn)
TENANT_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
MIN_API_KEY_CHARS = 16
MIN_SECRET_CHARS = 32
# An origin a browser sends: scheme, host (an IPv6 one in brackets), a port or `*` for any, no path.
ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[^\s/:\[\]]+)(:(\d{1,5}|\*))?")


def split_commas(value: object) -> object:
    """A comma-separated setting as the list it names (blanks dropped); anything else as it is."""
    return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value


class _Concern(BaseSettings):
    """One concern's settings: its fields are `Settings`' (the class that reads them all)."""

    model_config = SettingsConfigDict(env_prefix="TOKENTAIL_", frozen=True)


class AdmissionSettings(_Concern):
    """How many runs run at once, and in what order they start (shared/features/admission.py)."""

    max_active_runs_per_tenant: int = Field(
        0,
        ge=0,
        description="runs of one tenant running at once, across all workers; beyond, a run waits in its "
        "tenant's line; 0: no cap",
    )
    max_active_runs_per_user: int = Field(
        0, ge=0, description="runs of one end user (a request's `user`) running at once; 0: no cap"
    )
    tenant_max_active_runs: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict,
        description="per-tenant overrides of TOKENTAIL_MAX_ACTIVE_RUNS_PER_TENANT: `tenant:n` pairs, comma-separated",
    )
    max_queued_runs_per_tenant: int = Field(
        10_000,
        ge=0,
        description="runs one tenant may have waiting in its line (429 `queued_run_limit` beyond); 0: no bound",
    )
    tenant_weights: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict,
        description="how many runs a tenant starts per turn of the tenants' lines (`tenant:n` pairs, "
        "comma-separated; 1 for a tenant not listed)",
    )

    @field_validator("tenant_max_active_runs", "tenant_weights", mode="before")
    @classmethod
    def _tenant_numbers(cls, value: object, info: ValidationInfo) -> object:
        return (
            parse_tenant_numbers(value, f"TOKENTAIL_{(info.field_name or '').upper()}")
            if isinstance(value, str)
            else value
        )


class ChildSettings(_Concern):
    """How far a run's children may go (docs/subagents.md; worker/run/children.py)."""

    max_concurrent_children: int = Field(
        4, ge=1, description="a run's children going at once; a spawn beyond waits for one of them to end"
    )
    max_children_per_run: int = Field(32, ge=1, description="children one run may start (`too_many_children`)")
    max_child_depth: int = Field(3, ge=1, description="how deep a tree of runs may grow (`child_depth_exceeded`)")
    children_per_tenant_per_minute: int = Field(
        600,
        ge=0,
        description="children one tenant's runs may start in a minute, each counted as it starts"
        " (`spawn_rate_limited`); 0: no bound",
    )


class ConsoleSettings(_Concern):
    """Who may use the operator console, and what it keeps (gateway/admin/, docs/console.md)."""

    admin_keys: SecretStr | None = Field(
        None,
        description="comma-separated `name:key` pairs: operators' keys for the console and `/v1/admin` (every tenant)",
    )
    admin_tenants: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated tenants whose API keys are also admin keys"
    )
    admin_index_runs: int = Field(
        250_000, ge=1_000, description="runs the console's index lists, newest kept (docs/console.md)"
    )
    trace_url: str | None = Field(
        None, description="a trace's page in your tracing UI, `{trace_id}` in it: the console links each run's trace"
    )

    @field_validator("admin_tenants", mode="before")
    @classmethod
    def _split_tenants(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("admin_keys")
    @classmethod
    def _check_admin_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_api_keys(value.get_secret_value(), "TOKENTAIL_ADMIN_KEYS", "name")
        return value

    @property
    def admins_by_key(self) -> dict[str, str]:
        """The admin keys -> the names their actions are logged with."""
        if self.admin_keys is None:
            return {}
        return parse_api_keys(self.admin_keys.get_secret_value(), "TOKENTAIL_ADMIN_KEYS", "name")


class ProxySettings(_Concern):
    """Whose forwarding headers the gateway believes (gateway/access/peers.py)."""

    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        description="comma-separated addresses or networks (`10.0.0.0/8`) of the proxies in front of the gateway: "
        "only theirs are X-Forwarded-For and X-Forwarded-Proto believed (gateway/access/peers.py); empty: nobody's",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for proxy in value:
            try:
                ipaddress.ip_network(proxy)  # an address is a network of one
            except ValueError:
                # `*` above all: it would believe the chain's leftmost entry, which the client wrote.
                raise ValueError(
                    f"TOKENTAIL_TRUSTED_PROXIES: {proxy!r} is not an IP address or network (`10.0.0.5`, `10.0.0.0/8`):"
                    " name the proxies, never `*` or a host name"
                ) from None
        return value


class RedisSettings(_Concern):
    """Where the sessions and the job queue live (shared/connections/)."""

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="the sessions' Redis: streams, records, leases (a node of the cluster with `redis_cluster`;"
        " `redis+sentinel://host:port,.../service` for a primary Sentinels watch)",
    )
    redis_cluster: bool = Field(
        False, description="`redis_url` is a node of a Redis Cluster (needs `queue_redis_url`: arq is single-node)"
    )
    queue_redis_url: str | None = Field(
        None,
        description="a separate Redis for the job queue and the leases index (unset: `redis_url`); a Sentinel"
        " setup (`redis+sentinel://host:port,.../service`) fails over",
    )
    key_prefix: str = Field("tokentail", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")

    @field_validator("redis_url", "queue_redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        """One server's URL (normalised as redis-py reads it), or a Sentinel setup's (shared/plumbing/redis_urls.py)."""
        if value is None or sentinel_setup(value) is not None:
            return value
        return str(_REDIS_DSN.validate_python(value))

    @property
    def split_queue(self) -> bool:
        """The job queue lives on a Redis of its own: no script can queue a job with its session's write."""
        return self.queue_redis_url is not None


class SessionSettings(_Concern):
    """What a session keeps, for how long, and where it goes after (the archive: shared/store/archive.py)."""

    stream_maxlen: int = Field(10_000, ge=100, description="approximate bound of a session stream (XADD MAXLEN ~)")
    session_ttl_seconds: int = Field(86_400, ge=1, description="how long a finished session is kept")
    tombstone_ttl_seconds: int = Field(7 * 86_400, ge=0, description="how long an expired session answers 410")

    # The archive (optional): sessions kept in PostgreSQL once Redis forgets them (shared/store/archive.py)
    archive_url: str | None = Field(
        None,
        pattern=r"^postgres(ql)?://",
        description="PostgreSQL for the archive (`postgresql://user:password@host/db`; unset: Redis only)",
    )
    archive_retention_seconds: int = Field(
        0, ge=0, description="how long the archive keeps a session after its last write (0: for ever)"
    )
    archive_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="how long a read from the archive may take, connection included, before it answers 503",
    )


class RunSettings(_Concern):
    """What a run is given and may take: its model, the agents, MCP's waits, its input, steers and output."""

    default_model: str | None = Field(
        None,
        description="model of runs that name none (unset: OpenAI or Anthropic if its key is set, else scripted)",
    )
    agents: dict[str, str] = Field(
        default_factory=dict, description='your own agents, JSON {"name": "package.module:attribute"}'
    )
    mcp_server: str | None = Field(None, description="`module:function` building your MCPServer (docs/mcp.md)")
    mcp_wait_seconds: float = Field(60.0, gt=0, description="an MCP tool call without the Tasks extension waits")
    mcp_task_after_seconds: float = Field(0.5, ge=0, description="an MCP tool call waits, then answers a task")
    max_input_chars: int = Field(100_000, ge=1)
    max_steers_per_run: int = Field(32, ge=0, description="steers one run may take in (409 beyond); 0: no bound")
    max_steer_chars_per_run: int = Field(200_000, ge=0, description="characters of steers one run may take in")
    max_output_chars: int = Field(
        1_000_000, ge=1, description="longest answer one run may stream (it fails with `output_too_large` beyond)"
    )

    @property
    def model(self) -> str:
        """The model of runs that name none: with no API key at all, the offline scripted model."""
        if self.default_model:
            return self.default_model
        if os.environ.get("OPENAI_API_KEY"):
            return "openai:gpt-5.4-mini"
        if os.environ.get("ANTHROPIC_API_KEY"):
            return "anthropic:claude-haiku-4-5"
        return "scripted"


class AccessSettings(_Concern):
    """Who may call the API, from which pages, and how much one tenant, token or request may take."""

    api_keys: SecretStr | None = Field(
        None, description="comma-separated `tenant:key` pairs; set, every API call needs a key or a stream token"
    )
    secret: SecretStr | None = Field(None, description="signs stream tokens (HMAC); required with `api_keys`")
    stream_token_ttl_seconds: int = Field(900, ge=10, description="how long a stream token is valid")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated origins whose pages may call the API; `:*` for any port (`http://localhost:*`)",
    )
    max_request_bytes: int = Field(
        1_048_576, ge=1024, description="largest request body or WebSocket message accepted (413 beyond)"
    )
    max_header_bytes: int = Field(
        65_536, ge=4096, description="largest request line and headers accepted (431 beyond, and the connection closed)"
    )
    runs_per_minute: int = Field(
        600, ge=0, description="sessions and runs one tenant may create per minute (429 beyond); 0: no limit"
    )
    fork_bytes_per_hour: int = Field(
        256 * 1024 * 1024, ge=0, description="bytes one tenant's forks may copy per hour (429 beyond); 0: no limit"
    )
    max_streams_per_tenant: int = Field(
        1000, ge=0, description="open SSE/WebSocket streams per tenant across all gateways (429 beyond); 0: no limit"
    )
    max_streams_per_token: int = Field(16, ge=0, description="a stream token's share of its tenant's; 0: none")
    max_chat_socket_requests: int = Field(
        16,
        ge=1,
        description="requests one AI SDK chat WebSocket may have in flight at once, and one stream token across "
        "its sockets on a gateway; more are answered with an `error` frame",
    )
    chat_while_running: Literal["queue", "steer"] = Field(
        "queue", description="a chat UI's message sent while its chat's run is active: waits behind it, or steers it"
    )
    chat_token_may_set: Annotated[list[Literal["model", "params", "interrupt"]], NoDecode] = Field(
        default_factory=list,
        description="what a browser's chat token may choose for a run it queues (comma-separated: `model`, "
        "`params`, `interrupt`); empty: it runs the session's model and params, and waits for an active run",
    )

    @field_validator("cors_origins", "chat_token_may_set", mode="before")
    @classmethod
    def _split_access_lists(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if ORIGIN.fullmatch(origin) is None:
                raise ValueError(
                    f"TOKENTAIL_CORS_ORIGINS: {origin!r} is not an origin: scheme://host, with a port or :* for any, "
                    "and no path (`http://localhost:5173`, `https://app.example.com`, `http://localhost:*`)"
                )
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_api_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_api_keys(value.get_secret_value())  # fails early, with a message that shows no key
        return value

    @property
    def auth_enabled(self) -> bool:
        return self.api_keys is not None

    @property
    def tenants_by_key(self) -> dict[str, str]:
        return parse_api_keys(self.api_keys.get_secret_value()) if self.api_keys else {}


class GatewaySettings(_Concern):
    """How a gateway serves its streams and connections."""

    sse_heartbeat_seconds: float = Field(15.0, gt=0, description="idle time before a `: ping` comment")
    sse_retry_ms: int = Field(1000, ge=0, description="the `retry:` hint sent to EventSource clients")
    hot_routes: bool = Field(True, description="answer the requests each stream starts with without FastAPI's routes")
    sse_batch: int = Field(500, ge=1, description="events read from Redis per call (fewer when they are large)")
    ui_replay_seconds: float = Field(
        60.0,
        ge=0,
        description="how long a finished answer is still replayed to a chat UI reconnecting (useChat `resume`, "
        "AG-UI connect), so one that dropped just before the end gets the end",
    )
    stalled_client_seconds: float = Field(
        30.0, gt=0, description="a client that reads nothing of its stream for this long is disconnected"
    )
    shutdown_grace_seconds: int = Field(5, ge=0, description="how long uvicorn waits for open responses")
    keep_alive_seconds: int = Field(
        75,
        gt=0,
        description="how long an idle keep-alive connection stays open; above the idle timeout of the load "
        "balancer or client pool in front, so the gateway never closes a connection they are about to reuse",
    )
    gateway_redis_connections: int = Field(
        8,
        ge=3,
        description="Redis connections one gateway process opens at most, however many streams are open: "
        "one for live notifications, half of the rest for REST calls, the others for catch-up reads",
    )


class WebhookSettings(_Concern):
    """Where webhooks may go, and how hard they are delivered."""

    webhook_allowed_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="URL prefixes webhooks may be sent to (comma-separated, e.g. `https://hooks.example.com/`); "
        "empty: webhooks are off",
    )
    webhook_retry_seconds: int = Field(
        86_400, ge=1, description="how long a webhook event that its receiver does not take is retried"
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="how long one delivery attempt may take, as a whole")

    @field_validator("webhook_allowed_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("webhook_allowed_urls")
    @classmethod
    def _check_webhook_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"TOKENTAIL_WEBHOOK_ALLOWED_URLS: {url!r} is not an http(s) URL prefix")
        return value


class WorkerSettings(_Concern):
    """How a worker runs its runs: how many, their leases, attempts and timeouts."""

    worker_concurrency: int = Field(100, ge=1, description="runs one worker process streams at once")
    flush_interval_ms: int = Field(50, ge=0, description="token coalescing window; 0: none (docs/configuration.md)")
    lease_ms: int = Field(5_000, ge=500, description="how long a run's lease lives without a heartbeat")
    blocked_loop_seconds: float = Field(
        10.0,
        ge=0,
        description="a run whose agent holds the worker's event loop this long (a synchronous call in async "
        "code) fails with `blocked_event_loop`; 0: only logged",
    )
    max_attempts: int = Field(3, ge=1, description="attempts of a run whose workers died before it fails")
    reap_interval_seconds: float = Field(1.0, gt=0, description="how often workers look for runs whose lease expired")
    run_timeout_seconds: int = Field(1800, ge=1)


class ProviderSettings(_Concern):
    """How the model providers are called: an OpenAI-compatible server, retries, timeouts."""

    openai_compatible_base_url: str | None = Field(None, description="base URL of an OpenAI-compatible server")
    openai_compatible_api_key: SecretStr | None = Field(None, description="its API key, if it wants one")
    openai_compatible_continue: Literal["none", "vllm", "prefix"] = Field(
        "none",
        description="how that server continues a partial answer after a takeover: `vllm` (continue_final_message), "
        "`prefix` (DeepSeek's final message with prefix: true), `none` (the cut turn restarts)",
    )
    provider_max_retries: int = Field(4, ge=0, description="retries of 429, 5xx and connection errors before output")
    provider_retry_base_seconds: float = Field(0.5, ge=0, description="first retry delay, doubled each time, jittered")
    provider_retry_max_seconds: float = Field(20.0, ge=0, description="longest delay between retries")
    first_token_timeout_seconds: float = Field(60.0, gt=0, description="fail if a model sends nothing for this long")
    idle_timeout_seconds: float = Field(60.0, gt=0, description="fail if a streaming model goes silent this long")
    tool_timeout_seconds: float = Field(30.0, gt=0, description="a tool call running longer fails")


class WakeupSettings(_Concern):
    """How a worker hears of a job queued: a wake-up, or its poll (worker/process/)."""

    poll_interval_seconds: float = Field(
        0.5, gt=0, description="fallback queue poll when no wake-up arrives (a wake-up starts a job at once)"
    )
    worker_wakeups: bool = Field(True, description="listen for wake-ups; off leaves arq's plain timed poll")


class Settings(  # (fields in the reverse order of these bases, as before they were split: errors list them so)
    WakeupSettings,
    ProviderSettings,
    WorkerSettings,
    WebhookSettings,
    GatewaySettings,
    AccessSettings,
    RunSettings,
    SessionSettings,
    RedisSettings,
    AdmissionSettings,
    ChildSettings,
    ConsoleSettings,
    ProxySettings,
):
    """Every setting, each concern its own class above (their fields are this class's, as one)."""

    # hide_input_in_errors: a bad TOKENTAIL_API_KEYS must not print its keys in the error.
    model_config = SettingsConfigDict(env_prefix="TOKENTAIL_", frozen=True, hide_input_in_errors=True)

    @model_validator(mode="after")
    def _check_together(self) -> "Settings":
        """Settings that hold only with others."""
        if self.secret is not None and len(self.secret.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"TOKENTAIL_SECRET must be at least {MIN_SECRET_CHARS} characters")
        if self.api_keys is not None and self.secret is None:
            raise ValueError("TOKENTAIL_SECRET is required when TOKENTAIL_API_KEYS is set: it signs stream tokens")
        if self.redis_cluster and self.queue_redis_url is None:
            raise ValueError(
                "TOKENTAIL_REDIS_CLUSTER needs TOKENTAIL_QUEUE_REDIS_URL: the job queue (arq) is single-node"
            )
        if self.redis_cluster and sentinel_setup(self.redis_url) is not None:
            raise ValueError("TOKENTAIL_REDIS_URL names a Sentinel setup: a Redis Cluster fails over by itself")
        if self.archive_url is not None and self.redis_cluster:
            raise ValueError("TOKENTAIL_ARCHIVE_URL does not work with TOKENTAIL_REDIS_CLUSTER yet: use one Redis")
        return self


def parse_tenant_numbers(value: str, name: str) -> dict[str, int]:
    """`tenant:n,tenant:n` -> {tenant: n}, each n a whole number of at least 1."""
    numbers: dict[str, int] = {}
    for pair in (p.strip() for p in value.split(",") if p.strip()):
        tenant, _, number = pair.partition(":")
        if not TENANT_PATTERN.fullmatch(tenant) or not number.isdigit() or int(number) < 1:
            raise ValueError(f"{name}: {pair!r} is not `tenant:n` with n a whole number of at least 1")
        if tenant in numbers:
            raise ValueError(f"{name}: tenant {tenant!r} is listed twice")
        numbers[tenant] = int(number)
    return numbers


def parse_api_keys(value: str, setting: str = "TOKENTAIL_API_KEYS", owner: str = "tenant") -> dict[str, str]:
    """`tenant:key,tenant:key` -> {key: tenant} (or an admin's `name:key`). Errors name the pair's
    position, never the key."""
    keys: dict[str, str] = {}
    for position, pair in enumerate((p.strip() for p in value.split(",") if p.strip()), start=1):
        name, sep, key = pair.partition(":")
        if not sep or not TENANT_PATTERN.fullmatch(name):
            raise ValueError(f"{setting}: pair {position} must be `{owner}:key`, the {owner} made of A-Z a-z 0-9 _ . -")
        if len(key) < MIN_API_KEY_CHARS:
            raise ValueError(
                f"{setting}: key {position} ({owner} {name!r}) is shorter than {MIN_API_KEY_CHARS} characters"
            )
        if key in keys:
            raise ValueError(f"{setting}: key {position} ({owner} {name!r}) is listed twice")
        keys[key] = name
    if not keys:
        raise ValueError(f"{setting} is set but lists no `{owner}:key` pair")
    return keys


def setting_problems(error: ValidationError | SettingsError) -> list[str]:
    """What is wrong with the settings, one line per problem, each naming its `TOKENTAIL_*` variable
    and the rule it breaks (a key by its position in the list, never itself)."""
    if isinstance(error, SettingsError):  # a value pydantic-settings could not decode (JSON)
        field = re.search(r'field "(\w+)"', str(error))
        return [f"{f'TOKENTAIL_{field[1].upper()}' if field else 'a TOKENTAIL_ setting'}: not valid JSON"]
    problems = []
    for problem in error.errors(include_url=False, include_input=False):
        message = problem["msg"].removeprefix("Value error, ")
        variable = f"TOKENTAIL_{str(problem['loc'][0]).upper()}" if problem["loc"] else None
        if variable is not None and not message.startswith(variable):  # (a rule of several names them)
            message = f"{variable}: {message}"
        problems.append(message)
    return problems


@lru_cache
def get_settings() -> Settings:
    return Settings()
