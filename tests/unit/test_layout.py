"""Imports flow gateway -> shared <- worker (DESIGN.md); the CLI alone may start either side."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imported_packages(package: str) -> set[tuple[str, str]]:
    found = set()
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


@pytest.mark.parametrize(("package", "forbidden"), [("gateway", "worker"), ("worker", "gateway")])
def test_gateway_and_worker_never_import_each_other(package: str, forbidden: str) -> None:
    assert [path for path, name in _imported_packages(package) if name == forbidden] == []


def test_shared_imports_neither_side_except_the_cli() -> None:
    offenders = [
        path for path, name in _imported_packages("shared") if name in ("gateway", "worker") and path != "shared/cli.py"
    ]
    assert offenders == []
