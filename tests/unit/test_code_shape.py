"""The shape the code keeps: no class of the server over 250 lines (a class that knows everything is
how the write side once grew to 447), and no hand-written Lua that reads its keys or arguments by
position (their contracts bind them by name: shared/store/scripts/contract.py)."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_CLASS_LINES = 250


def test_no_class_of_the_server_is_over_250_lines() -> None:
    over = []
    for folder in ("gateway", "worker", "shared"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and (lines := node.end_lineno - node.lineno + 1) > MAX_CLASS_LINES:  # type: ignore[operator]
                    over.append(f"{path.relative_to(ROOT)}: {node.name} is {lines} lines")
    assert over == []


def test_hand_written_lua_reads_its_keys_and_arguments_by_name() -> None:
    positional = re.compile(r"\b(KEYS|ARGV)\s*\[")
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "shared").rglob("*.lua"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if positional.search(line.split("--", 1)[0])
    ]
    assert found == []
