"""The shape of the scripts' shared helpers (shared/store/lua/lib/, joined in the order of contract.py's
LIB_FILES in front of every script): every file there is joined, nothing in them is used before it is
defined (a Lua local is seen only by the code after it: an earlier use would reach for a global, which
Redis refuses when the script runs), and each is shared: a helper one script alone uses lives in it."""

import re
from importlib import resources
from pathlib import Path

from tokentail.shared.store.scripts.contract import LIB_FILES, lib_source

LUA = Path(__file__).resolve().parents[2] / "shared" / "store" / "lua"
LIB = resources.files("tokentail.shared.store.lua").joinpath("lib")
DEFINITION = re.compile(r"^local (?:function )?(\w+)", re.MULTILINE)
# A comment, or a string (its text left out): whichever starts first (none of the scripts has a long one).
COMMENT_OR_STRING = re.compile(r"--.*|'(?:[^'\\\n]|\\.)*'" + r'|"(?:[^"\\\n]|\\.)*"')


def _code(lua: str) -> str:
    """The Lua without its comments, its strings emptied: what names in it are code."""
    return COMMENT_OR_STRING.sub(lambda match: "" if match.group().startswith("--") else "''", lua)


def _named(name: str) -> re.Pattern[str]:
    """The helper named in code (a field of a table, `k.steers`, is not the helper `steers`)."""
    return re.compile(rf"(?<![.:\w]){name}\b")


def _uses(name: str, code: str) -> bool:
    return _named(name).search(code) is not None


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
        for match in _named(name).finditer(code)
        if match.start() < at
    )
    assert early == [], f"used before its definition (its file too late in LIB_FILES?): {early}"


def test_a_helper_is_used_by_two_scripts_or_by_another_helper() -> None:
    # Every script is sent with the whole of lib/ in front of it, and makes each of its helpers anew
    # on every call (docs/benchmarks.md): a helper that one script alone uses lives in that script,
    # above its use, where it is read with what it does. A helper whose last other user goes moves too.
    code = _code(lib_source())
    parts = DEFINITION.split(code)
    helpers = dict(zip(parts[1::2], parts[2::2], strict=True))
    scripts = {path.stem: _code(path.read_text()) for path in sorted(LUA.glob("*.lua"))}
    lonely = []
    for name in helpers:
        users = [script for script, body in scripts.items() if _uses(name, body)]
        if len(users) < 2 and not any(_uses(name, body) for other, body in helpers.items() if other != name):
            lonely.append(f"{name} ({', '.join(users) or 'no script'})")
    assert lonely == [], f"helpers of lib/ one script alone uses, to move into it: {lonely}"
