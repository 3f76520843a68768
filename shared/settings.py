"""All configuration, read from `TOKENTAIL_*` environment variables."""

import os
from functools import lru_cache

from pydantic import Field, RedisDsn, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOKENTAIL_", frozen=True)

    redis_url: RedisDsn = RedisDsn("redis://127.0.0.1:6379/0")
    key_prefix: str = Field("tokentail", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")

    # Streams and sessions
    stream_maxlen: int = Field(10_000, ge=100, description="approximate bound of a session stream (XADD MAXLEN ~)")
    session_ttl_seconds: int = Field(86_400, ge=1, description="how long a finished session is kept")
    tombstone_ttl_seconds: int = Field(7 * 86_400, ge=0, description="how long an expired session answers 410")
    default_model: str | None = Field(
        None,
        description="model of runs that name none (unset: OpenAI or Anthropic if its key is set, else scripted)",
    )
    agents: dict[str, str] = Field(
        default_factory=dict, description='your own agents, JSON {"name": "package.module:attribute"}'
    )
    max_input_chars: int = Field(100_000, ge=1)

    # Gateway
    sse_heartbeat_seconds: float = Field(15.0, gt=0, description="idle time before a `: ping` comment")
    sse_retry_ms: int = Field(1000, ge=0, description="the `retry:` hint sent to EventSource clients")
    sse_batch: int = Field(500, ge=1, description="events read from Redis per call")
    shutdown_grace_seconds: int = Field(5, ge=0, description="how long uvicorn waits for open responses")

    # Worker
    worker_concurrency: int = Field(100, ge=1, description="runs one worker process streams at once")
    flush_interval_ms: int = Field(50, ge=0, description="token coalescing window; 0 appends every token")
    lease_ms: int = Field(5_000, ge=500, description="how long a run's lease lives without a heartbeat")
    max_attempts: int = Field(3, ge=1, description="attempts of a run whose workers died before it fails")
    reap_interval_seconds: float = Field(1.0, gt=0, description="how often workers look for runs whose lease expired")
    run_timeout_seconds: int = Field(1800, ge=1)
    # Providers
    openai_compatible_base_url: str | None = Field(None, description="base URL of an OpenAI-compatible server")
    openai_compatible_api_key: SecretStr | None = Field(None, description="its API key, if it wants one")
    provider_max_retries: int = Field(4, ge=0, description="retries of 429, 5xx and connection errors before output")
    provider_retry_base_seconds: float = Field(0.5, ge=0, description="first retry delay, doubled each time, jittered")
    provider_retry_max_seconds: float = Field(20.0, ge=0, description="longest delay between retries")
    first_token_timeout_seconds: float = Field(60.0, gt=0, description="fail if a model sends nothing for this long")
    idle_timeout_seconds: float = Field(60.0, gt=0, description="fail if a streaming model goes silent this long")
    tool_timeout_seconds: float = Field(30.0, gt=0, description="a tool call running longer fails")
    poll_interval_seconds: float = Field(
        0.5, gt=0, description="fallback queue poll when no wake-up arrives (a wake-up starts a job at once)"
    )
    worker_wakeups: bool = Field(True, description="listen for wake-ups; off leaves arq's plain timed poll")

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


@lru_cache
def get_settings() -> Settings:
    return Settings()
