"""The import direction, with no exemption: tokentail's public face -> tokentail.gateway and
tokentail.worker -> tokentail.shared; inside the gateway, shared/ and the worker, each part imports only
the parts below it (GATEWAY_PARTS, SHARED_PARTS, WORKER_PARTS); no source folder (of tokentail/, gateway/,
worker/, shared/) holds more than 12 modules, nor a room of the unit tier (tests/unit/, mirroring the
source's) more than 12 test modules; nothing imports the folders by their repository names; no
module imports itself through others; the gateway's core (commands/, reading/, live/, reducer/,
schemas.py) imports and names no protocol of gateway/protocols/; Redis is sent commands only by shared/
(the store: the session's keys change only through it) and the gateway's live reading room
(REDIS_ROOMS); and the client loads no server code."""

import ast
import asyncio
import contextvars
import graphlib
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis, RedisCluster

ROOT = Path(__file__).resolve().parents[3]
INSTALLED_INSIDE = ("gateway", "worker", "shared")  # folders installed as tokentail.<folder>
CODE = ("tokentail", *INSTALLED_INSIDE, "tests", "bench", "scripts", "examples")

# Each part of the gateway (a module, or a folder of one concern) and the parts it may import. A new
# part must be added here; the arrangement must stay a hierarchy (checked below).
GATEWAY_PARTS: dict[str, set[str]] = {
    "metrics": set(),
    "errors": set(),
    "protocol": set(),
    "api_docs": set(),
    "body_limit": {"errors"},
    "cors": set(),
    "socket_tasks": set(),
    "access": {"metrics"},
    "schemas": {"access"},
    # The live reading: the process's one subscription and catch-up reads, in chunks (gateway/live/).
    "live": {"metrics"},
    # A run's stored events as the operations every renderer writes (gateway/reducer/): pure.
    "reducer": set(),
    "reading": {"access", "metrics", "protocol", "live", "reducer"},  # protocol: the direct write its server offers
    # tokentail's own socket (encodings/websocket.py) is a conversation: it asks for runs and answers.
    "encodings": {"access", "live", "reading", "commands", "schemas", "errors"},
    # The agent protocols' tasks (commands/tasks.py) wait for their run to settle through the hub.
    "commands": {"access", "live", "reading", "schemas"},
    "deps": {"access", "live", "reading", "commands"},
    "routes": {"access", "reading", "encodings", "commands", "deps", "schemas", "errors"},
    # Each protocol of others (a package under protocols/) over the core: none imports another (below).
    "protocols": {"access", "live", "reducer", "reading", "commands", "deps", "schemas", "errors", "socket_tasks"},
    # The requests every stream starts with, answered by the routes' own functions (gateway/hot_routes.py).
    "hot_routes": {"access", "reading", "routes", "deps", "schemas"},
    # The operator console: reads the core's stores and acts through its commands (gateway/admin/).
    "admin": {"access", "reading", "commands", "deps", "schemas", "errors"},
    "app": {
        "admin",
        "access",
        "live",
        "reading",
        "commands",
        "routes",
        "protocols",
        "hot_routes",
        "errors",
        "body_limit",
        "cors",
        "api_docs",
    },
    "server": {"app", "protocol"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] in INSTALLED_INSIDE:
        parts.insert(0, "tokentail")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(folder: str) -> Iterator[tuple[str, str]]:
    """(importing module, imported module) for every import in the folder's code, relative ones resolved."""
    for path in sorted((ROOT / folder).rglob("*.py")):
        if "node_modules" in path.parts:
            continue
        importer = module_name(path)
        package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                yield from ((importer, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
                module = ".".join(part for part in (base, node.module) if part)
                yield importer, module
                # `from tokentail.gateway import metrics` imports the module tokentail.gateway.metrics
                yield from ((importer, f"{module}.{alias.name}") for alias in node.names)


def side(module: str) -> str:
    """gateway, worker, shared, or face (the rest of tokentail)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in INSTALLED_INSIDE else "face"


@pytest.mark.parametrize("folder", CODE)
def test_nothing_imports_the_folders_by_their_repository_names(folder: str) -> None:
    # Installed, they exist only inside tokentail: `import worker` would find a user's own worker.py.
    wrong = sorted(
        f"{importer} imports {module}"
        for importer, module in imports(folder)
        if module.split(".")[0] in INSTALLED_INSIDE
    )
    assert wrong == []


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("gateway", {"worker", "face"}),
        ("worker", {"gateway", "face"}),
        ("shared", {"gateway", "worker", "face"}),
    ],
)
def test_imports_never_run_back_up(folder: str, forbidden: set[str]) -> None:
    upward = sorted(
        f"{importer} imports {module}"
        for importer, module in imports(folder)
        if module.startswith("tokentail") and side(module) in forbidden
    )
    assert upward == []


# The rooms of shared/, each importing only those above it here: the words of a session (no I/O), what a
# process is told and tells, its connections to Redis, the store over them, and the features that
# several processes carry out together over the store (shared/__init__.py says what each holds).
SHARED_PARTS: dict[str, set[str]] = {
    "vocabulary": set(),
    "plumbing": {"vocabulary"},
    "connections": {"vocabulary", "plumbing"},
    "store": {"vocabulary", "plumbing", "connections"},
    "features": {"vocabulary", "plumbing", "connections", "store"},
}

# The parts of the worker: one run's (run/) beside the process's (process/), which starts and stops runs;
# below both, the write side (writes/) and what they share (the metrics, the table of running runs, tools
# and providers), and at the bottom the agent's side of the public face (the exceptions an agent meets,
# what it writes to), which tokentail/frameworks/ imports too.
WORKER_PARTS: dict[str, set[str]] = {
    "agent_errors": set(),
    "event_sink": set(),
    "metrics": set(),
    "running": set(),
    "tools": {"agent_errors"},
    "providers": {"tools"},
    # The write side: what a held run writes, and the process's ticks of appends (run/ and process/ drive it).
    "writes": {"agent_errors", "metrics"},
    "run": {"agent_errors", "event_sink", "metrics", "running", "tools", "providers", "writes"},
    "process": {"agent_errors", "event_sink", "metrics", "running", "tools", "providers", "writes", "run"},
}

PARTS = {"gateway": GATEWAY_PARTS, "shared": SHARED_PARTS, "worker": WORKER_PARTS}


def part_of(module: str) -> str:
    """The part of its side a module is in: `tokentail.gateway.live.hub` is in `live`."""
    return module.split(".")[2]


@pytest.mark.parametrize("folder", sorted(PARTS))
def test_each_part_imports_only_the_parts_below_it(folder: str) -> None:
    table = PARTS[folder]
    parts = {
        part_of(module_name(path))
        for path in (ROOT / folder).rglob("*.py")
        if path.parent != ROOT / folder or path.name != "__init__.py"
    }
    assert parts == set(table), f"a part of {folder}/ that the table does not place"
    wrong = sorted(
        f"{importer} imports {module}"
        for importer, module in imports(folder)
        if module.startswith(f"tokentail.{folder}.")
        and importer.count(".") >= 2
        and part_of(module) in table
        and part_of(module) != part_of(importer)
        and part_of(module) not in table[part_of(importer)]
    )
    assert wrong == []
    graphlib.TopologicalSorter(table).prepare()  # raises CycleError if the table has a circle


def test_route_modules_do_not_import_each_other() -> None:
    # What two transports share (asking for a run, reading a position) lives beside the routes.
    crossing = sorted(
        f"{importer} imports {module}"
        for importer, module in imports("gateway/routes")
        if importer.startswith("tokentail.gateway.routes.") and module.startswith("tokentail.gateway.routes.")
    )
    assert crossing == []


def test_a_protocol_imports_the_core_never_another_protocol() -> None:
    def protocol(module: str) -> str | None:
        parts = module.split(".")
        return parts[3] if len(parts) > 3 and parts[:3] == ["tokentail", "gateway", "protocols"] else None

    crossing = sorted(
        f"{importer} imports {module}"
        for importer, module in imports("gateway/protocols")
        if protocol(importer) is not None and protocol(module) not in (None, protocol(importer))
    )
    assert crossing == []
    assert {path.parent.name for path in (ROOT / "gateway/protocols").glob("*/__init__.py")} == {
        "ai_sdk",
        "ag_ui",
        "responses",
        "mcp",
        "a2a",
        "langgraph",
        "acp",
    }


def test_a_protocols_versions_stand_apart_on_what_they_share() -> None:
    # A protocol's sub-packages (LangGraph's v1/ and v2/) import its top modules, never each other; the top
    # modules import no sub-package, but for the package's one router module (routes.py), which includes them.
    def version(module: str) -> tuple[str, str] | None:
        parts = module.split(".")
        inside = parts[:3] == ["tokentail", "gateway", "protocols"] and len(parts) > 4
        return (parts[3], parts[4]) if inside and (ROOT / "gateway/protocols" / parts[3] / parts[4]).is_dir() else None

    crossing = sorted(
        f"{importer} imports {module}"
        for importer, module in imports("gateway/protocols")
        if (to := version(module)) is not None
        and version(importer) != to
        and importer != f"tokentail.gateway.protocols.{to[0]}.routes"
    )
    assert crossing == []


@pytest.mark.parametrize("folder", INSTALLED_INSIDE)
def test_no_import_circle_among_the_modules_of(folder: str) -> None:
    # Imports under `if TYPE_CHECKING:` count too: a circle of types is one of meaning, and the first
    # import moved out of such a block would make it fail at import time.
    modules = {module_name(path) for path in (ROOT / folder).rglob("*.py")}
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for importer, module in imports(folder):
        if module in modules and module != importer:
            graph[importer].add(module)
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as circle:
        pytest.fail(f"an import circle: {' -> '.join(circle.args[1])}")


# How many modules (its __init__ aside) a source folder may hold: past that, it wants rooms.
MOST_MODULES = 12
SOURCE = ("tokentail", *INSTALLED_INSIDE)


@pytest.mark.parametrize("side", SOURCE)
def test_no_folder_holds_more_modules_than_a_reader_takes_in(side: str) -> None:
    folders = [ROOT / side, *(path for path in (ROOT / side).rglob("*") if path.is_dir())]
    crowded = {
        str(folder.relative_to(ROOT)): count
        for folder in folders
        if (count := len([p for p in folder.glob("*.py") if p.name != "__init__.py"])) > MOST_MODULES
    }
    assert crowded == {}


# The unit tier in rooms mirroring the source's: tests/unit/gateway/reading/ tests gateway/reading/, and
# project/ holds the repository's own rules and pins. Each room is a package (test modules of one name
# in two rooms need one) whose docstring says what it holds, under the source's cap, counted in test
# modules (conftest.py and helpers aside).
UNIT = ROOT / "tests/unit"


def unit_rooms() -> list[Path]:
    return [UNIT, *sorted(path for path in UNIT.rglob("*") if path.is_dir() and path.name != "__pycache__")]


def test_no_unit_room_holds_more_test_modules_than_a_reader_takes_in() -> None:
    crowded = {
        str(room.relative_to(ROOT)): count
        for room in unit_rooms()
        if (count := len(list(room.glob("test_*.py")))) > MOST_MODULES
    }
    assert crowded == {}


def test_each_unit_room_mirrors_a_source_folder_and_says_what_it_holds() -> None:
    astray = [
        str(room.relative_to(ROOT))
        for room in unit_rooms()[1:]
        if room.relative_to(UNIT).parts[0] != "project"
        and (room.relative_to(UNIT).parts[0] not in SOURCE or not (ROOT / room.relative_to(UNIT)).is_dir())
    ]
    assert astray == [], "each room of tests/unit, project/ aside, is named as a folder of the source it tests"
    door = {str(room.relative_to(ROOT)): room / "__init__.py" for room in unit_rooms()}
    doorless = sorted(
        name for name, path in door.items() if not (path.exists() and ast.get_docstring(ast.parse(path.read_text())))
    )
    assert doorless == [], "each room of tests/unit is a package whose docstring says what it holds"


def behind(folder: Path) -> set[str]:
    """The names of the modules and sub-packages in a package's folder, its __init__ aside."""
    modules = {path.stem for path in folder.glob("*.py") if path.name != "__init__.py"}
    return modules | {path.parent.name for path in folder.glob("*/__init__.py")}


DOORS = sorted(str(path.relative_to(ROOT)) for side in SOURCE for path in (ROOT / side).rglob("__init__.py"))


@pytest.mark.parametrize("door", DOORS)
def test_each_door_names_what_is_behind_it_and_what_the_room_may_import(door: str) -> None:
    # A package's __init__.py is its door: its docstring names each module and sub-package beside it (as a
    # word: `run_writes`, `v2`) and says what the room may import, so a reader learns the room there.
    path = ROOT / door
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    words = set(re.findall(r"\w+", docstring))
    assert sorted(behind(path.parent) - words) == [], f"{door} does not name them"
    assert re.search(r"\bimports?\b", docstring, re.IGNORECASE), f"{door} says not what the room may import"


# The core every protocol of others stands on: it serves them all alike, and knows none of them.
PROTOCOL_FREE = ("gateway/commands", "gateway/reading", "gateway/live", "gateway/reducer", "gateway/schemas.py")


def protocol_names() -> set[str]:
    return {path.parent.name for path in (ROOT / "gateway/protocols").glob("*/__init__.py")}


def names_of_protocols(path: Path, protocols: set[str]) -> Iterator[str]:
    """What in a module's code (its docstrings and comments aside) names a module of gateway/protocols/:
    a string such as import_module takes (`tokentail.gateway.protocols.a2a.routes`, `protocols.mcp`), or
    a path to one (`gateway/protocols/ag_ui/routes.py`)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    named = re.compile(r"(^|[./])protocols([./]|$)|(^|[./])(" + "|".join(sorted(protocols)) + r")[./]")
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if named.search(node.value):
                yield f"{module_name(path)} names {node.value!r} (line {node.lineno})"


def test_the_core_imports_no_protocol_and_names_none() -> None:
    # GATEWAY_PARTS already keeps commands/, reading/, live/, reducer/ and schemas.py below protocols/; this
    # says so for them by name, and also catches a protocol reached around the imports (import_module).
    protocols = protocol_names()
    paths = sorted(
        path
        for part in PROTOCOL_FREE
        for path in ((ROOT / part).rglob("*.py") if (ROOT / part).is_dir() else [ROOT / part])
    )
    assert paths and protocols
    core = {module_name(path) for path in paths}
    importing = [
        f"{importer} imports {module}"
        for importer, module in imports("gateway")
        if importer in core and (module + ".").startswith("tokentail.gateway.protocols.")
    ]
    naming = [line for path in paths for line in names_of_protocols(path, protocols)]
    named_after = [f"{module_name(path)} is named after a protocol" for path in paths if path.stem in protocols]
    assert sorted([*importing, *naming, *named_after]) == []


def test_importing_the_client_imports_no_server_code() -> None:
    # The agent-side names (RunContext, tool, Agent) come from the worker on first use only.
    server = ("fastapi", "starlette", "uvicorn", "arq", "redis", "tokentail.gateway", "tokentail.worker")
    code = (
        "import sys, tokentail; from tokentail import AsyncTokentail, Tokentail, Event; "
        f"print(sorted(m for m in sys.modules if any(m == s or m.startswith(s + '.') for s in {server!r})))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


# Redis only through the store: the only code that sends Redis a command is shared/ (the store's reads,
# scripts and indexes, and what the processes do together) and the gateway's live reading (one
# subscription and catch-up reads per gateway). Any other module asks the store.
REDIS_ROOMS = ("shared/", "gateway/live/")
REDIS_CHECKED = ("gateway", "worker", "tokentail")
# The commands sent elsewhere on purpose, each with its reason.
REDIS_ELSEWHERE = {
    # arq's own keys, in the code copied from arq (its run_job's retry counter, its poll's claim), which
    # tests/unit/project/test_borrowed.py holds to arq's.
    ("worker/process/arq_shell.py", "setex"),
    ("worker/process/arq_shell.py", "zrem"),
    # The worker's subscription to its wake, cancel and steer channels: it changes and reads no key.
    ("worker/process/main.py", "pubsub"),
    # `tokentail dev`'s own Redis servers, made a cluster (their CLUSTER and CONFIG), before any store.
    ("tokentail/redis_server.py", "execute_command"),
    ("tokentail/redis_server.py", "config_set"),
}
# Command methods that other objects carry too (a dict's get, an Event's set, a router's delete, click's
# echo, a response's json, the archive's save, the catalog's publish): a call of one is a Redis command
# only on a receiver named for a Redis client (`REDIS_RECEIVER`).
NOT_REDIS_ONLY = {"delete", "echo", "command", "json", "dump", "publish", "save", "exists"}
REDIS_RECEIVER = re.compile(r"(^|_)redis$|^pipe$")


def redis_commands() -> tuple[set[str], set[str]]:
    """The methods redis-py's clients send a command with (those of its command classes, and the client's
    pipeline, pubsub and execute_command): (those no other object carries, those others carry too)."""
    names = {"pipeline", "pubsub", "execute_command"}
    for client in (Redis, RedisCluster):
        for name in dir(client):
            method = getattr(client, name)
            if not name.startswith("_") and getattr(method, "__module__", "").startswith("redis.commands"):
                names.add(name)
    python = (dict, list, set, str, bytes, asyncio.Event, asyncio, time, logging.Logger, contextvars.ContextVar)
    shared = {name for name in names if any(hasattr(kind, name) for kind in python)} | NOT_REDIS_ONLY
    return names - shared, names & shared


def redis_calls(source: str) -> Iterator[tuple[int, str, str]]:
    """(line, command method, the call's code) of each call in `source` that sends Redis a command."""
    only_redis, shared = redis_commands()
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        method, receiver = node.func.attr, node.func.value
        receiver_name = receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", "")
        if method in only_redis or (method in shared and REDIS_RECEIVER.search(receiver_name)):
            yield node.lineno, method, ast.unparse(node.func)


def test_the_redis_check_knows_a_command_from_a_namesake() -> None:
    source = "pipe.hget(k, f)\nself.redis.set(k, v)\nstore.redis.getex(k)\nevent.set()\nrouter.delete('/')\n"
    assert [method for _, method, _ in redis_calls(source)] == ["hget", "set", "getex"]


def test_redis_is_sent_commands_only_by_the_store_and_the_live_reading_room() -> None:
    paths = sorted(path for folder in REDIS_CHECKED for path in (ROOT / folder).rglob("*.py"))
    calls = [
        (relative, line, method, call)
        for path in paths
        if not (relative := str(path.relative_to(ROOT))).startswith(REDIS_ROOMS)
        for line, method, call in redis_calls(path.read_text())
    ]
    assert [
        f"{where}:{line} {call}" for where, line, method, call in calls if (where, method) not in REDIS_ELSEWHERE
    ] == []
    assert REDIS_ELSEWHERE - {(where, method) for where, _, method, _ in calls} == set()  # none stale
