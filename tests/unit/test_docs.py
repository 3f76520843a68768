"""The docs name every setting the code reads and every public name `tokentail` exports, and
nothing that does not exist."""

import re
from pathlib import Path

import tokentail
from tokentail.shared.settings import Settings

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
