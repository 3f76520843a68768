"""A Lua script's reply, declared once in Python as its arguments are (contract.py): what each outcome
carries, by name.

A reply type is a NamedTuple. A tagged reply's type has `outcome` (a StrEnum) as its first field: the
Lua reply's first item names the outcome, and each outcome declares which fields follow it, in order.
An untagged reply (`Reply.of`) is its fields in the order declared. A `list` or `tuple` field, which
comes last, takes the rest of the reply: items one by one, or, for a list of NamedTuples, each item as
its fields in order. A field an outcome does not declare keeps its default.

From the declaration come both sides. `lua` is put in front of the script: a constructor per outcome
(`return reply.ok{seq = seq, queued = 'started'}`; `reply.value{...}` untagged), so the script never
writes a reply by position, and a nil field travels as a nil that does not cut off the fields after
it. `parse` turns Redis's reply into the type, converting each field as its annotation says.
"""

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# The constructor of an untagged reply.
VALUE = "value"


def text_of(value: Any) -> str:
    """A string Redis replied (bytes), or a number, as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _converter(hint: Any) -> Callable[[Any], Any]:
    """How one item of a reply becomes the field's type. Lua's nil (and false) arrive as None: a bool
    then is False, any other field None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if hint is bool:
        return lambda value: value == 1  # Lua's true reaches Redis's reply as 1
    convert: Callable[[Any], Any]
    if isinstance(hint, type) and issubclass(hint, Enum):
        convert = (lambda value: hint(text_of(value))) if issubclass(hint, str) else (lambda value: hint(int(value)))
    elif hint is str:
        convert = text_of
    elif hint is int:
        convert = int
    else:
        return lambda value: value  # bytes, Any: as Redis gave it
    return lambda value: None if value is None else convert(value)


def _is_record(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields")


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    read: Callable[[Any], Any]  # the field's value, from the reply's items from its place on
    rest: bool = False  # it takes the rest of the reply
    item_fields: tuple[str, ...] = ()  # a rest of NamedTuples: each item's fields, in order


class Reply(Generic[T]):
    """What a script replies, by outcome (or untagged, `Reply.of`), and the type it is parsed into."""

    def __init__(self, of: type[T], /, **outcomes: tuple[str, ...]) -> None:
        self._declare(of, True, outcomes)

    @classmethod
    def of(cls, of: type[T], *fields: str) -> "Reply[T]":
        """An untagged reply: its fields, in order."""
        reply = cls.__new__(cls)
        reply._declare(of, False, {VALUE: fields})
        return reply

    def _declare(self, of: type[T], tagged: bool, outcomes: dict[str, tuple[str, ...]]) -> None:
        self.type, self._tagged = of, tagged
        hints = typing.get_type_hints(of)
        if tagged:
            outcome = hints["outcome"]
            unknown = set(outcomes) ^ {member.value for member in outcome}
            if unknown:
                raise TypeError(f"{of.__name__}: the outcomes declared and its outcome's values differ: {unknown}")
            self._outcome: Callable[[Any], Any] = lambda value: outcome(text_of(value))
        self._fields = {
            tag: tuple(self._field(hints, name, name == names[-1]) for name in names) for tag, names in outcomes.items()
        }

    @staticmethod
    def _field(hints: dict[str, Any], name: str, last: bool) -> _Field:
        hint = hints[name]
        origin = typing.get_origin(hint)
        if origin not in (list, tuple):
            convert = _converter(hint)
            return _Field(name, lambda values: convert(values[0]))
        if not last:
            raise TypeError(f"{name}: a list takes the rest of the reply, and so comes last")
        (item, *_) = typing.get_args(hint)
        if not _is_record(item):
            each = _converter(item)
            return _Field(name, lambda values: origin(each(value) for value in values), True)
        item_hints = typing.get_type_hints(item)
        parts = [_converter(item_hints[field]) for field in item._fields]
        size = len(parts)

        def records(values: list[Any]) -> Any:
            at = range(0, len(values), size)
            return origin(item(*(part(v) for part, v in zip(parts, values[i : i + size], strict=True))) for i in at)

        return _Field(name, records, True, item._fields)

    def parse(self, reply: Any) -> T:
        if self._tagged:
            outcome = self._outcome(reply[0])
            fields, values, named = self._fields[outcome.value], reply[1:], {"outcome": outcome}
        else:
            fields, values, named = self._fields[VALUE], reply, {}
        for at, field in enumerate(fields):
            if at < len(values) or field.rest:
                named[field.name] = field.read(values[at:])
        return self.type(**named)

    def constructors(self) -> list[str]:
        """The names the script builds its replies with: `reply.<name>{...}`."""
        return list(self._fields)

    def lua(self) -> str:
        """The constructors, in a table named `reply`: `reply.<outcome>{<field> = <value>, ...}`."""
        lines = [
            "-- Generated from the script's contract (shared/store/scripts/): its replies, by name.",
            "local reply = {}",
            "local function reply_item(value) if value == nil then return false end return value end",
        ]
        for tag, fields in self._fields.items():
            items = ([f"'{tag}'"] if self._tagged else []) + [f"reply_item(r.{f.name})" for f in fields if not f.rest]
            body = f"local t = {{{', '.join(items)}}}"
            for rest in (f for f in fields if f.rest):
                parts = [f"item.{name}" for name in rest.item_fields] or ["item"]
                appends = " ".join(f"t[#t + 1] = reply_item({part})" for part in parts)
                body += f"; for _, item in ipairs(r.{rest.name} or {{}}) do {appends} end"
            lines.append(f"function reply.{tag}(r) {body}; return t end")
        return "\n".join(lines)
