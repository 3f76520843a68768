"""A Lua script's contract, declared once in Python: its keys, its arguments and its reply.

A contract is a dataclass whose fields are, in order, what the script is called with:

- one field typed as a `KeyGroup` (a dataclass of key names): the script's KEYS, bound in Lua as a
  table named after the field (`k.meta`). A key field declared `only_if(...)` is passed, and bound,
  only in the topologies it names (`k.queue` exists only when the job queue shares the Redis);
- fields typed as an `ArgGroup` (a dataclass of arguments that several scripts share), before the
  other arguments: bound as a table named after the field (`s.session_id`);
- every other field: an argument, bound as `a.<name>`. A `list` field goes as its items, after
  their count unless it is the last field, and is bound as a Lua table.

From the declaration come both sides of a call: `lua_source` puts the bindings in front of the
hand-written script (which reads names, never `KEYS[n]` or `ARGV[n]`), and `keys`/`args` pack a
call in the same order. A contract's `REPLY` declares its reply by name the same way (reply.py): the
script builds it with constructors put in front of it, and `parse` reads it by name.
"""

import dataclasses
import functools
import operator
import typing
from collections.abc import Callable
from dataclasses import dataclass
from enum import Flag, auto
from importlib import resources
from typing import Any, ClassVar, Generic, TypeVar

from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.store.scripts.reply import Reply
from tokentail.shared.vocabulary.records import MAX_PENDING_STEERS, STEERS_STEP

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Topology:
    """What a deployment's scripts are written for (the first line of each): a Redis Cluster (a
    session's notifications are published on its shard), the job queue on a Redis of its own
    (jobs go through the session's outbox), an archive (streams trimmed only past what it has)."""

    cluster: bool = False
    split_queue: bool = False
    archive: bool = False

    @classmethod
    def of(cls, settings: Settings) -> "Topology":
        return cls(settings.redis_cluster, settings.split_queue, bool(settings.archive_url))


def only_if(condition: Callable[[Topology], bool]) -> Any:
    """A key field present only in the topologies `condition` accepts (None in the others)."""
    return dataclasses.field(default=None, metadata={"present": condition})


def shared_queue(topology: Topology) -> bool:
    return not topology.split_queue


def single_redis(topology: Topology) -> bool:
    """Not a Redis Cluster: a script may write keys of another hash tag than its session's."""
    return not topology.cluster


def archived(topology: Topology) -> bool:
    return topology.archive


class Effect(Flag):
    """What a script may do beyond its keys' session, which some topologies add steps around."""

    # What a client is told is done, or a run's first or last write: a failover must not take it back.
    ACKNOWLEDGED = auto()
    QUEUES_JOB = auto()  # may queue a job (with the queue apart: through the session's outbox)
    REPORTS = auto()  # may report an event to the session's webhook
    FREES_NEXT = auto()  # ends a run: the next in line may be queued (its outbox covered by the lease's entry)
    CLAIMS_RUN = auto()  # takes a run's lease and its job (`job_id`); its reply says whether (`claimed`)
    # Its reply may name a job owed (`dispatch`; and one to take out of its tenant's line, `unqueue`),
    # pushed after it (`pushed`: whether) with the queue apart: no read of the outbox after it.
    MAY_DISPATCH = auto()
    MAY_REVIVE = auto()  # queues on a session only the archive may still hold (its reply's `outcome`: MISSING)
    # May take a run's lease away from a worker still running it: fences its stream (lib/seqs.lua),
    # which tests/unit/shared/store/test_contract.py checks.
    TAKES_LEASE = auto()
    NONE = 0


class KeyGroup:
    """Base of a dataclass of Redis keys: a script's KEYS, in field order."""


class ArgGroup:
    """Base of a dataclass of arguments several scripts take first (bound as one Lua table)."""


# The shared helpers: shared/store/lua/lib/<name>.lua, joined in this order (one blank line between two)
# in front of every script but the per-token path's lean one. The order matters: a Lua local is seen
# only by the code after it, so a file comes after every file whose helpers or constants it uses
# (events after webhooks and seqs: add_event calls add_hook and last_seq; jobs after admission:
# queue_job calls push_job; runs after jobs, records, steers and run_index: end_run calls queue_job,
# get_run, fail_steers and index_troubled; questions last). The first opens with what they are, and the
# rule every script keeps (OOM).
LIB_FILES = (
    "clock",
    "webhooks",
    "seqs",
    "events",
    "admission",
    "jobs",
    "records",
    "steers",
    "run_index",
    "runs",
    "questions",
)


def lib_source() -> str:
    """The shared helpers as the scripts get them (`Script.LIB`): LIB_FILES, in their order."""
    lib = resources.files("tokentail.shared.store.lua").joinpath("lib")
    return "\n".join(lib.joinpath(f"{name}.lua").read_text() for name in LIB_FILES)


def _lua_string(value: bool | str) -> str:
    return str(value).lower() if isinstance(value, bool) else f"'{value}'"


class Script(Generic[R]):
    """Base of a contract. `SOURCE`: the script's file in shared/store/lua/, without `.lua`. `JOINABLE`: the
    script takes many calls in one (worker/writes/appends.py joins a tick's appends): its argument groups come
    once, first, then each call's keys and arguments follow the previous call's (every list counted),
    and Lua binds `each_call`, an iterator of each call's index, `k` and `a`. A joined call may come
    with a key of its own first, its process's count of joined calls (`JoinCounter`), bound as
    `joined_count`: nil in a call made alone (by the runner; every call on a Redis Cluster).
    `COUNTED`: it is always called with that key (its calls' keys may then be one each)."""

    SOURCE: ClassVar[str]
    JOINABLE: ClassVar[bool] = False
    COUNTED: ClassVar[bool] = False  # joinable: always called with its process's count key first
    LIB: ClassVar[bool] = True  # lib/ goes in front of it (the per-token path's lean script goes without)
    EFFECTS: ClassVar[Effect] = Effect.NONE
    REPLY: ClassVar[Reply[Any] | None] = None  # a reply that is more than one value, by name

    def effects(self) -> Effect:
        return self.EFFECTS

    def queued_lanes(self) -> tuple[str, ...]:
        """Lanes besides its own (and, for a child's, its parent's) whose runs it may queue: with the queue
        apart, their outboxes are pushed after it, as its own is (shared/store/scripts/policies.py)."""
        return ()

    @classmethod
    @functools.cache
    def _layout(cls) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
        """Each field: its name, what it is (keys, group, list or value), and a group's member names."""
        hints = typing.get_type_hints(cls)
        layout = []
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            hint = hints[field.name]
            members = tuple(f.name for f in dataclasses.fields(hint)) if dataclasses.is_dataclass(hint) else ()
            if isinstance(hint, type) and issubclass(hint, KeyGroup):
                layout.append((field.name, "keys", members))
            elif isinstance(hint, type) and issubclass(hint, ArgGroup):
                layout.append((field.name, "group", members))
            elif typing.get_origin(hint) is list:
                layout.append((field.name, "list", ()))
            else:
                layout.append((field.name, "value", ()))
        arguments = [kind for _, kind, _ in layout if kind != "keys"]
        last_group = max((i for i, kind in enumerate(arguments) if kind == "group"), default=-1)
        if any(kind != "group" for kind in arguments[: last_group + 1]):
            raise TypeError(f"{cls.__name__}: argument groups come before the other arguments (they are bound first)")
        return tuple(layout)

    @classmethod
    @functools.cache
    def _key_fields(cls, topology: Topology) -> tuple[str, ...]:
        hints = typing.get_type_hints(cls)
        for name, kind, _ in cls._layout():
            if kind == "keys":
                fields = dataclasses.fields(hints[name])
                return tuple(f.name for f in fields if f.metadata.get("present", bool)(topology))
        return ()

    @classmethod
    def shared_args(cls) -> int:
        """How many arguments the argument groups take: what a joined call shares."""
        return sum(len(members) for _, kind, members in cls._layout() if kind == "group")

    @classmethod
    @functools.cache
    def lua_source(cls, topology: Topology) -> str:
        """The script as Redis runs it: the topology's constants, lib/, the bindings, the script."""
        lua = resources.files("tokentail.shared.store.lua")
        lib = lib_source() if cls.LIB else ""
        body = lua.joinpath(f"{cls.SOURCE}.lua").read_text()
        replies = cls.REPLY.lua() if cls.REPLY else ""
        return "\n".join((cls._topology_line(topology), lib, cls.lua_bindings(topology), replies, body))

    @staticmethod
    def _topology_line(topology: Topology) -> str:
        """The topology's constants, and those Python and the scripts share (shared/vocabulary/records.py)."""
        publish = "SPUBLISH" if topology.cluster else "PUBLISH"
        values = ", ".join(_lua_string(value) for value in (publish, topology.split_queue, topology.archive))
        shared = f"local STEERS_STEP, MAX_PENDING_STEERS = '{STEERS_STEP}', {MAX_PENDING_STEERS}"
        return f"local PUBLISH_EVENTS, SPLIT_QUEUE, ARCHIVE = {values}\n{shared}"

    @classmethod
    def lua_bindings(cls, topology: Topology) -> str:
        """The Lua that binds the script's keys and arguments by name: a table per argument group
        (`s`), then `k` for the keys and `a` for the rest; for a joinable script, the iterator
        `each_call` of every call's index, `k` and `a`."""
        lines = ["-- Generated from the script's contract (shared/store/scripts/): keys and arguments by name."]
        at = 1  # the groups' arguments come first, at known places
        for name, kind, members in cls._layout():
            if kind == "group":
                bound = ", ".join(f"{member} = ARGV[{at + i}]" for i, member in enumerate(members))
                lines.append(f"local {name} = {{{bound}}}")
                at += len(members)
        lines.append(f"local at = {at}  -- the next argument: a list moves it by its length")
        return "\n".join(lines + (cls._each_call(topology) if cls.JOINABLE else cls._one_call(topology)))

    @classmethod
    def _one_call(cls, topology: Topology) -> list[str]:
        """Each table made whole by one constructor, a list by `unpack`."""
        layout = cls._layout()
        lines: list[str] = []
        values: list[str] = []  # the arguments before the first list, at known places after `at`
        bound_a = False
        for name, kind, _ in layout:
            if kind == "keys":
                bound = ", ".join(f"{key} = KEYS[{i}]" for i, key in enumerate(cls._key_fields(topology), 1))
                lines.append(f"local {name} = {{{bound}}}")
            elif kind == "value" and bound_a:  # after a list: at a place known only then
                lines.append(f"a.{name} = ARGV[at]; at = at + 1")
            elif kind == "value":
                values.append(name)
            elif kind == "list":
                if not bound_a:
                    lines.append(cls._constructor(values))
                    bound_a = True
                last = name == layout[-1][0]  # the rest of ARGV; any other list is counted
                lines.append("local n = #ARGV - at + 1" if last else "local n = tonumber(ARGV[at]); at = at + 1")
                # unpack returns at most a few thousand values: a longer list is copied one by one.
                lines.append(f"if n <= 4000 then a.{name} = {{unpack(ARGV, at, at + n - 1)}}")
                lines.append(f"else a.{name} = {{}}; for i = 1, n do a.{name}[i] = ARGV[at + i - 1] end end")
                lines.append("at = at + n")
        return lines if bound_a else [*lines, cls._constructor(values)]

    @staticmethod
    def _constructor(values: list[str]) -> str:
        bound = ", ".join(f"{value} = ARGV[at + {i}]" for i, value in enumerate(values))
        return f"local a = {{{bound}}}; at = at + {len(values)}"

    @classmethod
    def _each_call(cls, topology: Topology) -> list[str]:
        """An iterator over the calls joined into this one. It fills the same `k` and `a` for each
        call, making no table per call (the per-token script takes dozens of calls in one): the
        script keeps nothing of them past its call's turn."""
        keys = cls._key_fields(topology)
        n = len(keys)
        assert cls.COUNTED or n >= 2, "a joined call's count key is told apart from its calls' keys by their number"
        tables = [f"local {name} = {{}}" for name, kind, _ in cls._layout() if kind == "keys"]
        joined = "1  -- the count's key first, always"
        if not cls.COUNTED:
            joined = f"#KEYS % {n}  -- 1 with the count's key first, else 0"
        lines = [
            *tables,
            f"local joined = {joined}",
            "local joined_count = joined == 1 and KEYS[1] or nil",
            "local a = {}",
            "local call = 0",
            "local function each_call()",
        ]
        body = [f"if call == (#KEYS - joined) / {n} then return nil end", "call = call + 1"]
        for name, kind, _ in cls._layout():
            if kind == "keys":
                body += [f"{name}.{key} = KEYS[joined + (call - 1) * {n} + {i}]" for i, key in enumerate(keys, 1)]
            elif kind == "value":
                body.append(f"a.{name} = ARGV[at]; at = at + 1")
            elif kind == "list":
                body.append("local n = tonumber(ARGV[at]); at = at + 1")
                body.append(f"a.{name} = a.{name} or {{}}")
                body.append(f"for i = 1, n do a.{name}[i] = ARGV[at + i - 1] end")
                body.append(f"for i = n + 1, #a.{name} do a.{name}[i] = nil end")
                body.append("at = at + n")
        key_tables = ", ".join(name for name, kind, _ in cls._layout() if kind == "keys")
        body.append(f"return call, {key_tables}, a")
        return [*lines, *(f"  {line}" for line in body), "end"]

    def keys(self, topology: Topology) -> list[str]:
        """The call's KEYS, in this topology."""
        return Packer.of(type(self), topology).keys(self)

    def args(self) -> list[Any]:
        """The call's ARGV."""
        return Packer.of(type(self), Topology()).args(self)

    def parse(self, reply: Any) -> R:
        """The reply, typed: as its `REPLY` declares it, or else as Redis gave it."""
        return typing.cast(R, self.REPLY.parse(reply) if self.REPLY else reply)


def _getter(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """What `names` (dotted: `k.meta`) are on a contract, as a tuple, in one call."""
    if len(names) == 1:
        one = operator.attrgetter(names[0])
        return lambda script: (one(script),)
    return operator.attrgetter(*names)


class Packer:
    """How one contract's calls are packed in one topology, worked out once from its declaration:
    on the per-token path a call is packed in a few attribute lookups."""

    _made: ClassVar[dict[tuple[type, Topology], "Packer"]] = {}

    @classmethod
    def of(cls, contract: type[Script[Any]], topology: Topology) -> "Packer":
        if (packer := cls._made.get((contract, topology))) is None:
            packer = cls._made[contract, topology] = cls(contract, topology)
        return packer

    def __init__(self, contract: type[Script[Any]], topology: Topology) -> None:
        keys: list[str] = []
        segments: list[tuple[Callable[[Any], tuple[Any, ...]] | None, str, bool]] = []
        fixed: list[str] = []  # arguments at known places since the last list
        last = contract._layout()[-1][0]
        for name, kind, members in contract._layout():
            if kind == "keys":
                keys = [f"{name}.{key}" for key in contract._key_fields(topology)]
            elif kind == "group":
                fixed += [f"{name}.{member}" for member in members]
            elif kind == "value":
                fixed.append(name)
            else:
                if fixed:
                    segments.append((_getter(fixed), "", False))
                    fixed = []
                segments.append((None, name, contract.JOINABLE or name != last))
        if fixed:
            segments.append((_getter(fixed), "", False))
        self._keys = _getter(keys) if keys else (lambda script: ())
        self._segments = tuple(segments)

    def keys(self, script: Script[Any]) -> list[Any]:
        values = list(self._keys(script))
        if None in values:
            raise ValueError(f"{type(script).__name__}: a key its topology needs is missing: {values!r}")
        return values

    def args(self, script: Script[Any]) -> list[Any]:
        args: list[Any] = []
        for fixed, name, counted in self._segments:
            if fixed is not None:
                args += fixed(script)
                continue
            items = getattr(script, name)
            if counted:
                args.append(len(items))
            args += items
        return args
