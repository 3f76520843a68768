"""TanStack AI's interrupt binding: what lets its client (`@tanstack/ai-client`) answer an interrupt.

Its client resolves an interrupt (`resolveInterrupts`, `canResolve: true`) only when the interrupt
carries a binding in `metadata["tanstack:interruptBinding"]` (or, before bindings, an approval's
`{kind: "approval", toolName, input}`); any other is `kind: "unbound"`, which it shows and never
answers. A generic binding is `{v: 1, kind: "generic", interruptId, interruptedRunId, generation,
responseSchemaHash?}`, and the client takes it when `interruptedRunId` is the run it knows the stream
by (the `runId` it posted, or joined by), `generation` the one every interrupt of the batch carries,
and `responseSchemaHash` its own digest of the interrupt's `responseSchema`: SHA-256 over its
canonical JSON (`canonical_json`), as `@tanstack/ai`'s `digestInterruptJson` computes it. Its answer
is the plain AG-UI `resume[]` entry, which the gateway takes as it takes any other.
"""

import hashlib
import json
import math
import re
from decimal import Decimal
from typing import Any

BINDING_KEY = "tanstack:interruptBinding"
_SURROGATE = re.compile("[\ud800-\udfff]")  # a lone one: a pair is one code point in a Python str


def binding(interrupt_id: str, interrupted_run_id: str, response_schema: dict[str, Any] | None) -> dict[str, Any]:
    """The generic binding of interrupt `interrupt_id` of the run the client knows as `interrupted_run_id`."""
    bound: dict[str, Any] = {
        "v": 1,
        "kind": "generic",
        "interruptId": interrupt_id,
        "interruptedRunId": interrupted_run_id,
        "generation": 0,  # each interrupt of a batch the same: an AG-UI run ends at one batch
    }
    if response_schema is not None and (digest := schema_hash(response_schema)) is not None:
        bound["responseSchemaHash"] = digest
    return bound


def schema_hash(schema: Any) -> str | None:
    """`sha256:<hex>` of the schema's canonical JSON; None for one the client cannot digest either."""
    try:
        text = canonical_json(schema)
    except ValueError:
        return None
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def canonical_json(value: Any) -> str:
    """The JSON text `@tanstack/ai`'s `canonicalInterruptJson` makes of `value` as its client parsed it:
    keys sorted by UTF-16 code units, no spaces, strings and numbers as `JSON.stringify` writes them."""
    match value:
        case None:
            return "null"
        case bool():
            return "true" if value else "false"
        case int() | float():
            return _js_number(value)
        case str():
            return _js_string(value)
        case list() | tuple():
            return "[" + ",".join(canonical_json(item) for item in value) + "]"
        case dict():
            keys = sorted(value, key=lambda key: str(key).encode("utf-16-be", "surrogatepass"))
            return "{" + ",".join(f"{_js_string(str(key))}:{canonical_json(value[key])}" for key in keys) + "}"
        case _:
            raise ValueError(f"not JSON: {type(value).__name__}")


def _js_string(text: str) -> str:
    # json.dumps escapes what JSON.stringify does (quote, backslash, controls, lowercase \u00xx); JS
    # escapes a lone surrogate too.
    return _SURROGATE.sub(lambda lone: f"\\u{ord(lone.group()):04x}", json.dumps(text, ensure_ascii=False))


def _js_number(number: int | float) -> str:
    """The number as JavaScript writes the double it parses it to (Number.prototype.toString)."""
    if isinstance(number, int) and abs(number) < 2**53:
        return str(number)
    double = float(number)
    if not math.isfinite(double):
        raise ValueError("not JSON: a number that is not finite")
    if double == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(double)).as_tuple()  # repr: the shortest digits that round-trip, as JS
    assert isinstance(exponent, int)
    shown = "".join(map(str, digits)).rstrip("0")
    exponent += len(digits) - len(shown)
    k, n = len(shown), exponent + len(shown)  # the value is 0.<shown> × 10^n
    if k <= n <= 21:
        text = shown + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{shown[:n]}.{shown[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * -n + shown
    else:
        mantissa = shown[0] + (f".{shown[1:]}" if k > 1 else "")
        text = f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return ("-" if sign else "") + text
