"""What Redis receives, pinned: the sha256 of every contract's `lua_source` (the topology's constants,
the shared helpers, the bindings, the replies, the script) in every topology, kept in lua_sources.json.

A diff in that file is a change in what Redis runs. A refactor of how the sources are laid out on
disk (files split, joined, moved) must leave it as it is; a change meant to reach Redis (a script
or a helper edited, even a comment) makes it again, on purpose, and says so in its commit:

    .venv/bin/python -m tests.unit.project.test_lua_sources --write
"""

import hashlib
import importlib
import itertools
import json
import pkgutil
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from tokentail.shared.store import scripts
from tokentail.shared.store.scripts.contract import Script, Topology

DIGESTS = Path(__file__).with_name("lua_sources.json")
TOPOLOGIES = [Topology(*flags) for flags in itertools.product((False, True), repeat=3)]


def _label(topology: Topology) -> str:
    flags = [name for name in ("cluster", "split_queue", "archive") if getattr(topology, name)]
    return "+".join(flags) or "one_redis"


def contracts() -> list[type[Script[Any]]]:
    """Every contract with a script: each class of a module of shared/store/scripts/ with a SOURCE of its own."""
    found = []
    for info in pkgutil.iter_modules(scripts.__path__):
        module = importlib.import_module(f"{scripts.__name__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Script) and value.__module__ == module.__name__:
                found += [value] if "SOURCE" in vars(value) else []
    return sorted(found, key=lambda contract: f"{contract.__module__}.{contract.__qualname__}")


def digests() -> dict[str, dict[str, str]]:
    """Per contract (its module and name), per topology, the sha256 of the script Redis receives."""
    return {
        f"{contract.__module__.rpartition('.')[2]}.{contract.__qualname__}": {
            _label(topology): hashlib.sha256(contract.lua_source(topology).encode()).hexdigest()
            for topology in TOPOLOGIES
        }
        for contract in contracts()
    }


def test_every_script_file_is_a_contract_s_source() -> None:
    lua = resources.files("tokentail.shared.store.lua")
    files = {path.name.removesuffix(".lua") for path in lua.iterdir() if path.name.endswith(".lua")}
    assert {contract.SOURCE for contract in contracts()} == files


def test_what_redis_receives_is_as_pinned() -> None:
    now, pinned = digests(), json.loads(DIGESTS.read_text())
    changed = sorted(
        f"{name} ({topology})"
        for name in now.keys() | pinned.keys()
        for topology in now.get(name, {}).keys() | pinned.get(name, {}).keys()
        if now.get(name, {}).get(topology) != pinned.get(name, {}).get(topology)
    )
    assert changed == [], f"what Redis receives changed; if on purpose, see {__name__}'s docstring"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.unit.project.test_lua_sources --write")
    DIGESTS.write_text(json.dumps(digests(), indent=2, sort_keys=True) + "\n")
