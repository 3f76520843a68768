"""The `params` a run may carry: the documented sampling knobs, and nothing else.

The gateway refuses any other key, a value out of range, NaN or infinity with 422 when the run is
asked for, and a knob the run's provider does not take as soon as the provider is known (the
request's or the session's model). Providers pass each knob as the SDK's own argument, never as
raw request fields: params can neither replace the model, the messages or the agent's system
prompt, nor ask for several completions.

    knob                  openai  openai-compatible  anthropic  scripted
    temperature           yes     yes                -          (ignored)
    top_p                 yes     yes                -          (ignored)
    top_k                 -       yes                -          (ignored)
    max_tokens            yes     yes                yes        (ignored)
    stop                  yes     yes                yes        (ignored)
    seed                  yes     yes                -          (ignored)
    presence_penalty      yes     yes                -          (ignored)
    frequency_penalty     yes     yes                -          (ignored)
    thinking_budget       -       -                  yes        (ignored)
    tokens, tokens_per_second, fail_at_token, first_token_seconds, due_stamps:  scripted only (its
                          length, pace, failure, time to first token, tokens stamped with their due time)

(Anthropic's current API and SDK take no sampling knobs: its models choose their own.)
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tokentail.shared.vocabulary.catalog import ANTHROPIC, OPENAI, OPENAI_COMPATIBLE, SCRIPTED


class RunParams(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, strict=True)

    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=1, le=1000)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    stop: list[str] | None = Field(None, max_length=16, description="up to 16 stop sequences")
    seed: int | None = Field(None, ge=-(2**63), lt=2**63)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    thinking_budget: int | None = Field(
        None, ge=1024, le=1_000_000, description="anthropic: extended thinking, in tokens; streams as reasoning.delta"
    )
    tokens: int | None = Field(None, ge=0, le=1_000_000, description="scripted: how many tokens (150)")
    tokens_per_second: float | None = Field(
        None, ge=0, le=100_000, description="scripted: their pace; 0 streams at once (25)"
    )
    fail_at_token: int | None = Field(None, ge=0, description="scripted: fail after this many tokens")
    first_token_seconds: float | None = Field(
        None, ge=0, le=60, description="scripted: its wait before each answer's first token, as a model's (0)"
    )
    due_stamps: bool | None = Field(
        None, description="scripted: each token is the time it was due, ms since the epoch (benchmarks)"
    )

    def given(self) -> dict[str, Any]:
        """The knobs that were set, as a dict (what a run record stores)."""
        return self.model_dump(exclude_none=True)


_LENGTH = frozenset({"max_tokens", "stop"})
_OPENAI = _LENGTH | {"temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"}
PROVIDER_PARAMS: dict[str, frozenset[str]] = {
    OPENAI: _OPENAI,
    OPENAI_COMPATIBLE: _OPENAI | {"top_k"},
    ANTHROPIC: _LENGTH | {"thinking_budget"},
    SCRIPTED: frozenset(RunParams.model_fields),  # it ignores the sampling knobs: switching models needs no change
}


def check_params_for(provider: str, params: dict[str, Any]) -> None:
    """ValueError naming the knobs `provider` does not take."""
    unknown = sorted(set(params) - PROVIDER_PARAMS[provider])
    if unknown:
        takes = ", ".join(sorted(PROVIDER_PARAMS[provider]))
        raise ValueError(f"{provider} models do not take {', '.join(unknown)}; they take {takes}")
