import pytest

from shared.modelref import ModelRef, parse_model
from worker.providers import _PROVIDERS


def test_scripted_parses() -> None:
    assert parse_model("scripted") == ModelRef("scripted", "")


@pytest.mark.parametrize("value", ["gpt-4o", "nope:thing", ""])
def test_unknown_providers_are_refused_with_the_list(value: str) -> None:
    with pytest.raises(ValueError, match="available: scripted"):
        parse_model(value)


def test_the_worker_serves_every_provider_the_gateway_accepts() -> None:
    from shared.modelref import PROVIDERS

    assert set(_PROVIDERS) == set(PROVIDERS)
