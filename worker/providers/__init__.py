"""Model providers: each turns a request into a stream of text deltas and a usage report."""

from shared.modelref import SCRIPTED, parse_model
from worker.providers.base import InvalidRequest, Provider
from worker.providers.scripted import ScriptedProvider

_PROVIDERS: dict[str, Provider] = {SCRIPTED: ScriptedProvider()}


def resolve(model: str) -> tuple[Provider, str]:
    """The provider for a `model` string, and the model name to pass it."""
    try:
        ref = parse_model(model)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    return _PROVIDERS[ref.provider], ref.name
