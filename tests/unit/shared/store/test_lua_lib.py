"""The shape of the scripts' shared helpers (shared/store/lua/lib/, joined in the order of contract.py's
LIB_FILES in front of every script): every file there is joined, nothing in them is used before it is
defined (a Lua local is seen only by the code after it: an earlier use would reach for a global, which
Redis refuses when the script runs), and each is shared: a helper one script alone uses lives in it."""

import re
from importlib import resources
from pathlib import Path

import fakeredis

from tokentail.shared.store.scripts.contract import LIB_FILES, lib_source

LUA = Path(__file__).resolve().parents[4] / "shared" / "store" / "lua"
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


def _index_troubled(server: fakeredis.FakeRedis, runs: list[tuple[str, str, int, int]], ttl: int = 60) -> None:
    """lib/run_index.lua's index_troubled, once per (run id, status, attempt, when it ended in ms), for a
    child's lane of session s_1 of tenant acme."""
    server.hset("tt:{s_1}:meta", "tenant", "acme")
    call = (
        lib_source()
        + """
local k, s = {troubled = KEYS[1], root = KEYS[2]}, {session_id = ARGV[1], ttl = ARGV[2]}
for i = 3, #ARGV, 4 do
  local run = {run_id = ARGV[i], status = ARGV[i + 1], attempt = tonumber(ARGV[i + 2])}
  index_troubled(k, s, run, tonumber(ARGV[i + 3]))
end
"""
    )
    args = [str(value) for value in ("s_1/r_p", ttl, *[value for run in runs for value in run])]
    server.eval(call, 2, "tt:{admin}:troubled", "tt:{s_1}:meta", *args)


def test_runs_in_trouble_are_listed_newest_kept_and_none_older_than_the_sessions() -> None:
    server = fakeredis.FakeRedis()
    kept = int(re.search(r"TROUBLED_KEPT = (\d+)", (LIB / "run_index.lua").read_text()).group(1))  # type: ignore[union-attr]
    ended = [("r_ok", "completed", 1, 1_000), ("r_over", "completed", 2, 2_000), ("r_bad", "failed", 1, 3_000)]
    _index_troubled(server, ended)
    listed = server.zrange("tt:{admin}:troubled", 0, -1, withscores=True)
    assert listed == [(b"s_1 r_over", 2_000_000.0), (b"s_1 r_bad", 3_000_000.0)]  # (a child: its session's id)
    assert server.zrange("tt:{admin}:troubled:acme", 0, -1) == [b"s_1 r_over", b"s_1 r_bad"]

    _index_troubled(server, [("r_late", "failed", 1, 3_000 + 60_001)])  # the sessions' ttl (60 s) later
    assert server.zrange("tt:{admin}:troubled", 0, -1) == [b"s_1 r_late"]

    _index_troubled(server, [(f"r_{i}", "failed", 1, 100_000 + i) for i in range(kept + 5)])
    assert server.zcard("tt:{admin}:troubled") == server.zcard("tt:{admin}:troubled:acme") == kept
    assert server.zrange("tt:{admin}:troubled", -1, -1) == [f"s_1 r_{kept + 4}".encode()]
