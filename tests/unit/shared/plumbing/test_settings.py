"""shared/plumbing/settings.py: TOKENTAIL_* variables, their defaults, and what is refused at startup."""

import os
from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from tokentail.shared.plumbing.settings import Settings, get_settings, parse_api_keys, setting_problems

KEY_A = "acme-key-0123456789"
KEY_B = "beta-key-0123456789"
SECRET = "s" * 32


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No TOKENTAIL_* variable (nor provider key) of the machine's own leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("TOKENTAIL_") or name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_defaults_run_a_single_node_stack_with_no_auth() -> None:
    settings = Settings()
    assert str(settings.redis_url) == "redis://127.0.0.1:6379/0"
    assert settings.queue_redis_url is None and not settings.split_queue and not settings.redis_cluster
    assert settings.key_prefix == "tokentail"
    assert not settings.auth_enabled and settings.tenants_by_key == {}
    assert settings.cors_origins == [] and settings.agents == {}
    assert (settings.lease_ms, settings.max_attempts, settings.flush_interval_ms) == (5_000, 3, 50)
    assert settings.model == "scripted"  # no provider key: the offline model


def test_variables_are_read_with_the_tokentail_prefix_and_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENTAIL_REDIS_URL", "redis://redis:6380/2")
    monkeypatch.setenv("TOKENTAIL_QUEUE_REDIS_URL", "redis://queue:6379/0")
    monkeypatch.setenv("TOKENTAIL_LEASE_MS", "2000")
    monkeypatch.setenv("TOKENTAIL_SSE_HEARTBEAT_SECONDS", "2.5")
    monkeypatch.setenv("TOKENTAIL_WORKER_WAKEUPS", "false")
    monkeypatch.setenv("TOKENTAIL_CORS_ORIGINS", " https://a.example , https://b.example,, ")
    monkeypatch.setenv("TOKENTAIL_AGENTS", '{"slow": "tests.agents.slow_agent:slow_tool_agent"}')
    monkeypatch.setenv("LEASE_MS", "9999")  # without the prefix: not ours
    settings = Settings()
    assert settings.redis_url == "redis://redis:6380/2"
    assert settings.split_queue
    assert settings.lease_ms == 2000 and settings.sse_heartbeat_seconds == 2.5
    assert settings.worker_wakeups is False
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.agents == {"slow": "tests.agents.slow_agent:slow_tool_agent"}


def test_get_settings_reads_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENTAIL_KEY_PREFIX", "first")
    assert get_settings().key_prefix == "first"
    monkeypatch.setenv("TOKENTAIL_KEY_PREFIX", "second")
    assert get_settings() is get_settings() and get_settings().key_prefix == "first"


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.lease_ms = 1  # type: ignore[misc]
    assert settings.model_copy(update={"lease_ms": 1000}).lease_ms == 1000  # tests derive variants so


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("TOKENTAIL_REDIS_URL", "http://redis:6379", "URL scheme should be 'redis' or 'rediss'"),
        ("TOKENTAIL_KEY_PREFIX", "has space", "should match pattern"),
        ("TOKENTAIL_KEY_PREFIX", "", "at least 1 character"),
        ("TOKENTAIL_STREAM_MAXLEN", "99", "greater than or equal to 100"),
        ("TOKENTAIL_LEASE_MS", "499", "greater than or equal to 500"),
        ("TOKENTAIL_SSE_HEARTBEAT_SECONDS", "0", "greater than 0"),
        ("TOKENTAIL_GATEWAY_REDIS_CONNECTIONS", "2", "greater than or equal to 3"),
        ("TOKENTAIL_WORKER_CONCURRENCY", "many", "valid integer"),
    ],
)
def test_out_of_range_or_malformed_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, complaint: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=complaint) as refused:
        Settings()
    (problem,) = setting_problems(refused.value)  # what the commands print: the variable, then its rule
    assert problem.startswith(f"{variable}: ") and complaint in problem


def test_agents_that_are_not_json_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENTAIL_AGENTS", "slow=tests.agents.slow_agent:slow_tool_agent")
    with pytest.raises(SettingsError, match='field "agents"') as refused:
        Settings()
    assert setting_problems(refused.value) == ["TOKENTAIL_AGENTS: not valid JSON"]


def test_each_problem_is_one_line_naming_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENTAIL_ADMIN_KEYS", "ops:" + "k" * 15)
    monkeypatch.setenv("TOKENTAIL_MAX_CONCURRENT_CHILDREN", "0")
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert setting_problems(refused.value) == [
        "TOKENTAIL_ADMIN_KEYS: key 1 (name 'ops') is shorter than 16 characters",
        "TOKENTAIL_MAX_CONCURRENT_CHILDREN: Input should be greater than or equal to 1",
    ]
    monkeypatch.delenv("TOKENTAIL_ADMIN_KEYS")
    monkeypatch.delenv("TOKENTAIL_MAX_CONCURRENT_CHILDREN")
    monkeypatch.setenv("TOKENTAIL_REDIS_CLUSTER", "true")  # a rule of two settings: its message names both
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert setting_problems(refused.value) == [
        "TOKENTAIL_REDIS_CLUSTER needs TOKENTAIL_QUEUE_REDIS_URL: the job queue (arq) is single-node"
    ]


def test_a_cluster_needs_a_queue_redis_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENTAIL_REDIS_CLUSTER", "true")
    with pytest.raises(ValidationError, match="needs TOKENTAIL_QUEUE_REDIS_URL"):
        Settings()
    monkeypatch.setenv("TOKENTAIL_QUEUE_REDIS_URL", "redis://queue:6379/0")
    assert Settings().redis_cluster and Settings().split_queue


def test_api_keys_map_keys_to_tenants_and_need_a_long_enough_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENTAIL_API_KEYS", f"acme:{KEY_A}, beta:{KEY_B}")
    with pytest.raises(ValidationError, match="TOKENTAIL_SECRET is required"):
        Settings()
    monkeypatch.setenv("TOKENTAIL_SECRET", SECRET[:-1])
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings()
    monkeypatch.setenv("TOKENTAIL_SECRET", SECRET)
    settings = Settings()
    assert settings.auth_enabled
    assert settings.tenants_by_key == {KEY_A: "acme", KEY_B: "beta"}
    assert KEY_A not in repr(settings) and SECRET not in repr(settings)  # secrets stay hidden


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        (f"acme{KEY_A}", "pair 1 must be `tenant:key`"),
        (f"acme:{KEY_A},bad tenant:{KEY_B}", "pair 2 must be `tenant:key`"),
        (f"{'t' * 65}:{KEY_A}", "pair 1 must be `tenant:key`"),
        ("acme:tiny-key", r"key 1 \(tenant 'acme'\) is shorter than 16"),
        (f"acme:{KEY_A},beta:{KEY_A}", r"key 2 \(tenant 'beta'\) is listed twice"),
        (" , ,", "lists no `tenant:key` pair"),
    ],
)
def test_bad_api_keys_are_refused_without_showing_any_key(
    monkeypatch: pytest.MonkeyPatch, value: str, complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint) as direct:
        parse_api_keys(value)
    monkeypatch.setenv("TOKENTAIL_SECRET", SECRET)
    monkeypatch.setenv("TOKENTAIL_API_KEYS", value)
    with pytest.raises(ValidationError, match=complaint) as at_startup:
        Settings()
    for message in (str(direct.value), str(at_startup.value)):
        assert not any(key in message for key in (KEY_A, KEY_B, "tiny-key"))


def test_the_default_model_follows_the_provider_keys_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    assert Settings().model.startswith("anthropic:")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    assert Settings().model.startswith("openai:")  # OpenAI first when both are set
    monkeypatch.setenv("TOKENTAIL_DEFAULT_MODEL", "scripted")
    assert Settings().model == "scripted"  # a model named in the settings wins
