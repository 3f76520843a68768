"""The shape of the scripts' shared helpers (shared/lua/lib/, joined in the order of contract.py's
LIB_FILES in front of every script): every file there is joined, and nothing in them is used before
it is defined (a Lua local is seen only by the code after it: an earlier use would reach for a global,
which Redis refuses when the script runs)."""

import re
from importlib import resources

from tokentail.shared.scripts.contract import LIB_FILES, lib_source

LIB = resources.files("tokentail.shared.lua").joinpath("lib")
DEFINITION = re.compile(r"^local (?:function )?(\w+)", re.MULTILINE)


def _code(lua: str) -> str:
    """The Lua without its comments (a `--` in a string cuts it short: none of the helpers has one)."""
    return "\n".join(line.split("--", 1)[0] for line in lua.splitlines())


def test_every_lib_file_is_joined_once() -> None:
    files = sorted(path.name.removesuffix(".lua") for path in LIB.iterdir() if path.name.endswith(".lua"))
    assert sorted(LIB_FILES) == files
    assert len(set(LIB_FILES)) == len(LIB_FILES)


def test_no_helper_is_used_before_it_is_defined() -> None:
    code = _code(lib_source())
    defined = {match.group(1): match.start() for match in DEFINITION.finditer(code)}
    early = sorted(
        f"{name} at {code.count(chr(10), 0, match.start()) + 1}"
        for name, at in defined.items()
        for match in re.finditer(rf"\b{name}\b", code)
        if match.start() < at
    )
    assert early == [], f"used before its definition (its file too late in LIB_FILES?): {early}"
