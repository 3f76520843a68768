"""The docs name every setting the code reads, and nothing it does not."""

import re
from pathlib import Path

from shared.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented_and_every_documented_one_exists() -> None:
    documented = set(re.findall(r"^\| `TOKENTAIL_([A-Z_]+)`", DOC.read_text(), flags=re.MULTILINE))
    assert documented == {name.upper() for name in Settings.model_fields}
