"""Imports flow tokentail -> gateway, worker -> shared (DESIGN.md), with no exemption; and the
package users import for the client loads no server code."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imported_packages(package: str) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            found.update((str(path.relative_to(ROOT)), name.split(".")[0]) for name in names)
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("gateway", {"worker", "tokentail"}),
        ("worker", {"gateway", "tokentail"}),
        ("shared", {"gateway", "worker", "tokentail"}),
    ],
)
def test_imports_never_run_back_up(package: str, forbidden: set[str]) -> None:
    assert sorted(path for path, name in _imported_packages(package) if name in forbidden) == []


def test_importing_the_client_imports_no_server_code() -> None:
    # The agent-side names (RunContext, tool, Agent) come from the worker on first use only.
    server = ("fastapi", "starlette", "uvicorn", "arq", "redis", "gateway", "worker")
    code = (
        "import sys, tokentail; from tokentail import AsyncTokentail, Tokentail, Event; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({server!r})))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_route_modules_do_not_import_each_other() -> None:
    # What two transports share (asking for a run, reading a position) lives beside the routes.
    routes = ROOT / "gateway" / "routes"
    crossing = [
        f"{path.name} imports {node.module}"
        for path in routes.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gateway.routes")
    ]
    assert crossing == []
