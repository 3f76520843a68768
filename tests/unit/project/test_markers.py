"""One protocol's tests are found from one place, its marker (`./scripts/test -m responses`): there is
one per package of gateway/protocols/, registered in pyproject.toml, and a test module whose file name
or folder names a protocol (tests/unit/gateway/protocols/responses/) carries its marker in `pytestmark`,
in every tier. Tests of other modules that drive a protocol carry its marker one by one; no file name
tells of those, so nothing here can check them."""

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# What a test module's file name says of the protocol it tests: the names the suite uses. The Responses
# API's modules say `responses` (`openai_responses`, `responses_socket`) or `response` (its ids);
# TanStack AI's client speaks AG-UI (gateway/protocols/ag_ui/tanstack.py); the AI SDK's modules say
# `ai_sdk`, or `use_chat`, `ui_message` (its hook, its stream). `chat` alone says nothing: `tokentail
# chat` and the demo chat page speak tokentail's own protocol.
NAMED = {
    "ai_sdk": "ai_sdk",
    "use_chat": "ai_sdk",
    "ui_message": "ai_sdk",
    "ag_ui": "ag_ui",
    "tanstack": "ag_ui",
    "response": "responses",
    "mcp": "mcp",
    "a2a": "a2a",
    "langgraph": "langgraph",
    "acp": "acp",
}
# The framework adapters' tests (tokentail/frameworks/: LangGraph's graphs run as agents) are named for
# the framework, not for LangGraph's Agent Server API (gateway/protocols/langgraph).
ADAPTERS = ROOT / "tests/e2e/frameworks"
# A module named for several protocols (`ui_protocols`, `chat_protocols`, `protocol_cases`) cannot say
# which: it carries one of their markers at least, on itself or on its tests (the table of cases marks
# each protocol's cases, and tokentail's own are none's).
SEVERAL = "protocol"


def protocols() -> set[str]:
    return {path.parent.name for path in (ROOT / "gateway/protocols").glob("*/__init__.py")}


def registered() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {line.partition(":")[0] for line in project["tool"]["pytest"]["ini_options"]["markers"]}


def marks(tree: ast.AST) -> set[str]:
    """The names `pytest.mark.<name>` written in `tree`."""
    return {
        mark.attr
        for mark in ast.walk(tree)
        if isinstance(mark, ast.Attribute)
        and isinstance(mark.value, ast.Attribute)
        and mark.value.attr == "mark"
        and isinstance(mark.value.value, ast.Name)
        and mark.value.value.id == "pytest"
    }


def module_marks(path: Path) -> set[str]:
    """The marks of the module's `pytestmark` (one mark or a list of them): every test of it has them."""
    return {
        name
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.Assign) and any(getattr(target, "id", None) == "pytestmark" for target in node.targets)
        for name in marks(node.value)
    }


def modules_of_tests() -> list[Path]:
    return sorted(
        path
        for path in (ROOT / "tests").rglob("test_*.py")
        if "node_modules" not in path.parts and not path.is_relative_to(ADAPTERS)
    )


def test_each_protocol_has_its_marker() -> None:
    assert protocols() == set(NAMED.values())
    assert protocols() <= registered()


def test_a_module_named_for_a_protocol_carries_its_marker() -> None:
    missing = []
    for path in modules_of_tests():
        names = path.relative_to(ROOT / "tests").with_suffix("").parts  # its folders' and its own
        named = {protocol for fragment, protocol in NAMED.items() if any(fragment in name for name in names)}
        carried = module_marks(path) & protocols()
        if named - carried or (SEVERAL in path.stem and not marks(ast.parse(path.read_text())) & protocols()):
            said = sorted(named) or "protocols"
            missing.append(f"{path.relative_to(ROOT)}: named for {said}, marked {sorted(carried)}")
    assert missing == []


def test_the_check_reads_marks_as_modules_write_them(tmp_path: Path) -> None:
    one, several, other = tmp_path / "one.py", tmp_path / "several.py", tmp_path / "other.py"
    one.write_text("import pytest\n\npytestmark = pytest.mark.mcp\n")
    several.write_text("import pytest\n\npytestmark = [pytest.mark.ai_sdk, pytest.mark.timeout(9)]\n")
    other.write_text("import pytest\n\nmarks = pytest.mark.a2a\n")
    assert (module_marks(one), module_marks(several), module_marks(other)) == ({"mcp"}, {"ai_sdk", "timeout"}, set())
