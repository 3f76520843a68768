"""The docs name every setting the code reads and every public name `tokentail` exports, and
nothing that does not exist."""

import builtins
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import tokentail
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.vocabulary import errors
from tokentail.worker import agent_errors

DOCS = Path(__file__).resolve().parents[3] / "docs"


def test_every_setting_is_documented_and_every_documented_one_exists() -> None:
    documented = re.findall(r"^\| `TOKENTAIL_([A-Z_]+)`", (DOCS / "configuration.md").read_text(), flags=re.MULTILINE)
    assert set(documented) == {name.upper() for name in Settings.model_fields}


def test_the_public_names_are_the_ones_the_python_api_page_lists() -> None:
    # The first column of each row of the table in docs/python.md: `Name` or `Name`, `Other`.
    rows = re.findall(r"^\| (`[^|]+`) \|", (DOCS / "python.md").read_text(), flags=re.MULTILINE)
    documented = {name for row in rows for name in re.findall(r"`(\w+)`", row)}
    assert documented == set(tokentail.__all__)
    assert all(getattr(tokentail, name) is not None for name in tokentail.__all__)  # each one imports


def test_the_client_s_errors_are_tokentail_errors() -> None:
    assert issubclass(tokentail.ApiError, tokentail.TokentailError)


# The tree of each module of exceptions: each class it defines under its parent, once; a root may be a
# built-in (the agent's side draws its errors under `Exception`, `ValueError` and `BaseException`).
@pytest.mark.parametrize("module", [errors, agent_errors], ids=lambda module: module.__name__)
def test_the_errors_module_draws_every_error_class_it_defines_under_its_parent(module: ModuleType) -> None:
    drawn: list[tuple[str, str | None]] = []  # each line of the tree: the class it names, the one a level up
    parents: list[str] = []
    for line in (module.__doc__ or "").splitlines():
        if match := re.match(r"^((?:[│ ]   )*)(?:[├└]── )?([A-Z]\w+) ", line):
            depth = len(match.group(1)) // 4 + (1 if "──" in line else 0)
            parents[depth:] = [match.group(2)]
            drawn.append((match.group(2), parents[depth - 1] if depth and "──" in line else None))
    defined = {
        name: cls for name, cls in vars(module).items() if isinstance(cls, type) and cls.__module__ == module.__name__
    }
    named = [name for name, _ in drawn]
    assert sorted(name for name in set(named) if named.count(name) > 1) == []  # each class drawn once
    built_in = {name for name in named if name not in defined and isinstance(getattr(builtins, name, None), type)}
    assert set(named) - built_in == set(defined)
    classes = {**{name: getattr(builtins, name) for name in built_in}, **defined}
    for name, parent in drawn:
        if parent is not None:
            assert classes[name].__base__ is classes[parent], name


def test_every_exception_an_agent_meets_is_imported_from_tokentail() -> None:
    # In a process of its own, so that each comes through the lazy import, as an agent's module gets it;
    # and cheaply: the worker's module of exceptions is all of the server code they load.
    names = sorted(
        name
        for name, cls in vars(agent_errors).items()
        if isinstance(cls, type) and cls.__module__ == agent_errors.__name__
    )
    assert names and set(names) <= set(tokentail.__all__)
    server = ("fastapi", "starlette", "uvicorn", "arq", "redis", "tokentail.gateway", "tokentail.worker.")
    code = (
        f"import sys; from tokentail import {', '.join(names)}; import tokentail.worker.agent_errors as module; "
        f"print(all(cls is getattr(module, cls.__name__) for cls in ({', '.join(names)},))); "
        f"print(sorted(m for m in sys.modules if m.startswith({server!r})))"
    )
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert imported.splitlines() == ["True", "['tokentail.worker.agent_errors']"]
