"""All configuration, read from `TOKENTAIL_*` environment variables."""

from functools import lru_cache

from pydantic import Field, RedisDsn
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOKENTAIL_", frozen=True)

    redis_url: RedisDsn = RedisDsn("redis://127.0.0.1:6379/0")
    key_prefix: str = Field("tokentail", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")

    # Streams and sessions
    stream_maxlen: int = Field(10_000, ge=100, description="approximate bound of a session stream (XADD MAXLEN ~)")
    session_ttl_seconds: int = Field(86_400, ge=1, description="how long a finished session is kept")
    tombstone_ttl_seconds: int = Field(7 * 86_400, ge=0, description="how long an expired session answers 410")
    default_model: str = "scripted"
    max_input_chars: int = Field(100_000, ge=1)

    # Gateway
    sse_heartbeat_seconds: float = Field(15.0, gt=0, description="idle time before a `: ping` comment")
    sse_retry_ms: int = Field(1000, ge=0, description="the `retry:` hint sent to EventSource clients")
    sse_batch: int = Field(500, ge=1, description="events read from Redis per call")
    shutdown_grace_seconds: int = Field(5, ge=0, description="how long uvicorn waits for open responses")

    # Worker
    worker_concurrency: int = Field(100, ge=1, description="runs one worker process streams at once")
    flush_interval_ms: int = Field(50, ge=0, description="token coalescing window; 0 appends every token")
    lease_ms: int = Field(10_000, ge=500, description="how long a run's lease lives without a heartbeat")
    run_timeout_seconds: int = Field(1800, ge=1)
    poll_interval_seconds: float = Field(
        0.5, gt=0, description="fallback queue poll when no wake-up arrives (a wake-up starts a job at once)"
    )
    worker_wakeups: bool = Field(True, description="listen for wake-ups; off leaves arq's plain timed poll")


@lru_cache
def get_settings() -> Settings:
    return Settings()
