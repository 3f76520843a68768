import asyncio
import time

import pytest

from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.vocabulary.catalog import PROVIDERS, ModelRef, check_agent, parse_model
from tokentail.worker.providers import Providers
from tokentail.worker.providers.base import InvalidRequest, ProviderError
from tokentail.worker.providers.scripted import ScriptedProvider
from tokentail.worker.run.agents import BUILTIN


def test_models_parse() -> None:
    assert parse_model("scripted") == ModelRef("scripted", "")
    assert parse_model("openai:gpt-5.4-mini") == ModelRef("openai", "gpt-5.4-mini")
    assert parse_model("openai-compatible:llama3.2") == ModelRef("openai-compatible", "llama3.2")


@pytest.mark.parametrize("value", ["gpt-4o", "nope:thing", ""])
def test_unknown_providers_are_refused_with_the_list(value: str) -> None:
    with pytest.raises(ValueError, match="available: anthropic, openai, openai-compatible, scripted"):
        parse_model(value)


def test_a_provider_needs_a_model_name() -> None:
    with pytest.raises(ValueError, match="needs a name"):
        parse_model("openai:")


def test_agents_are_checked_against_builtins_and_configured_ones() -> None:
    check_agent("assistant", frozenset())
    check_agent("support", frozenset({"support"}))
    with pytest.raises(ValueError, match="available: assistant, careful, support, team"):
        check_agent("nope", frozenset({"support"}))


def test_the_worker_knows_every_builtin_agent_the_gateway_accepts() -> None:
    from tokentail.shared.vocabulary.catalog import BUILTIN_AGENTS

    assert set(BUILTIN) == set(BUILTIN_AGENTS)


async def test_the_worker_builds_every_provider_the_gateway_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    providers = Providers(Settings(openai_compatible_base_url="http://127.0.0.1:9/v1"))
    for provider in PROVIDERS:
        assert (await providers.resolve(f"{provider}:m" if provider != "scripted" else provider))[0] is not None


async def test_missing_keys_and_base_urls_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    providers = Providers(Settings())
    with pytest.raises(ProviderError, match="OPENAI_API_KEY is not set"):
        await providers.resolve("openai:gpt-5.4-mini")
    with pytest.raises(InvalidRequest, match="TOKENTAIL_OPENAI_COMPATIBLE_BASE_URL"):
        await providers.resolve("openai-compatible:llama")


async def test_a_provider_is_built_off_the_event_loop_and_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Importing an SDK takes seconds on a busy box: on the loop it stalled every run of the worker.
    built: list[str] = []

    def slow_build(provider: str) -> ScriptedProvider:
        time.sleep(0.3)
        built.append(provider)
        return ScriptedProvider()

    providers = Providers(Settings())
    monkeypatch.setattr(providers, "_build", slow_build)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticking = asyncio.create_task(tick())
    await asyncio.gather(*(providers.resolve("scripted") for _ in range(3)))
    ticking.cancel()
    assert built == ["scripted"] and ticks >= 10


def test_the_default_model_follows_the_keys_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert Settings().model == "scripted"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    assert Settings().model.startswith("anthropic:")
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    assert Settings().model.startswith("openai:")
    assert Settings(default_model="scripted").model == "scripted"


def test_a_configured_agent_that_cannot_be_imported_names_its_path_and_the_missing_package() -> None:
    from tokentail.worker.run.agents import check_agents

    cases = {
        "tests.agents.agent_missing_a_package:agent": (
            "it imports 'tokentail_test_no_such_package', which is not installed"
        ),
        "no_such_package.agents:support": "there is no module 'no_such_package'",
        "tests.no_such_module:agent": "there is no module 'tests.no_such_module'",
        "tests.agents.slow_agent:no_such_attribute": "'tests.agents.slow_agent' has no 'no_such_attribute'",
        "tests.agents.slow_agent": "is not an import path 'package.module:attribute'",
    }
    for path, said in cases.items():
        with pytest.raises(InvalidRequest) as refused:
            check_agents(Settings(agents={"support": path}))
        assert said in str(refused.value) and "agent 'support'" in str(refused.value), refused.value
        assert path in str(refused.value) or ":" not in path


def test_a_missing_framework_names_the_extra_that_installs_it() -> None:
    from tokentail.worker.run.agents import _missing

    missing = ModuleNotFoundError("No module named 'semantic_kernel'", name="semantic_kernel")
    assert "pip install 'tokentail[semantic-kernel]'" in _missing(missing, "myapp.agents")


def test_the_gateway_finds_agent_modules_without_running_them() -> None:
    from tokentail.shared.vocabulary.catalog import unresolved_agents

    assert unresolved_agents({"support": "examples.support_agent:support"}) == []
    # The gateway does not run an agent, so a package only the worker needs is not the gateway's concern.
    assert unresolved_agents({"needs": "tests.agents.agent_missing_a_package:agent"}) == []
    (wrong,) = unresolved_agents({"support": "exampels.support_agent:support"})
    assert "there is no module 'exampels.support_agent'" in wrong
