"""The docs name every setting the code reads and every public name `tokentail` exports, and
nothing that does not exist."""

import re
from pathlib import Path

import tokentail
from tokentail.shared.plumbing.settings import Settings
from tokentail.shared.vocabulary import errors

DOCS = Path(__file__).resolve().parents[2] / "docs"


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


def test_the_errors_module_draws_every_error_class_it_defines_under_its_parent() -> None:
    drawn = {}  # the class each line of the tree names -> the class one level up (None at the top)
    parents: list[str] = []
    for line in (errors.__doc__ or "").splitlines():
        if match := re.match(r"^((?:[│ ]   )*)(?:[├└]── )?([A-Z]\w+) ", line):
            depth = len(match.group(1)) // 4 + (1 if "──" in line else 0)
            parents[depth:] = [match.group(2)]
            drawn[match.group(2)] = parents[depth - 1] if depth and "──" in line else None
    defined = {
        name: cls for name, cls in vars(errors).items() if isinstance(cls, type) and cls.__module__ == errors.__name__
    }
    assert set(drawn) == set(defined)
    for name, parent in drawn.items():
        if parent is not None:
            assert defined[name].__base__ is defined[parent], name
