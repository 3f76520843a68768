"""The framework adapters' tests, each framework in a virtualenv of its own (`./scripts/test` runs
them after the main suite). One framework's tests:
`.venv/bin/nox -s "frameworks(environment='shared')" -- tests/e2e/frameworks/test_haystack.py`.

Framework packages never enter tokentail's core dependencies. The extras that leave every version
tokentail uses alone share one virtualenv (which also shows that they can be installed together);
those that pin one of them at another version each get their own, so no conflict reaches the core
environment: semantic-kernel pins pydantic<2.14 and websockets<17, openai-agents websockets<17.
The tests are end to end: a real redis-server, gateway and worker processes.

Each environment installs from its lockfile (tests/e2e/frameworks/locks/, made by the `lock`
session from the extras' ranges: `.venv/bin/nox -s lock`), so a framework's new release changes
nothing until the lock is made again, and an environment whose lockfile has not changed is reused
as it is (`--envdir` outside the clone keeps them between clones): only tokentail itself, this
clone's, is installed again each time.
"""

import hashlib
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"  # pip: it honours the machine's index and constraints
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["frameworks"]  # `lock` only when asked for

TESTS = "tests/e2e/frameworks"
LOCKS = Path(TESTS) / "locks"
# A virtualenv -> the extras (pyproject.toml) installed in it, and their tests.
ENVIRONMENTS = {
    "shared": (
        ["langgraph", "langchain", "haystack", "pydantic-ai"],
        [
            f"{TESTS}/test_langgraph.py",
            f"{TESTS}/test_langchain.py",
            f"{TESTS}/test_haystack.py",
            f"{TESTS}/test_pydantic_ai.py",
            f"{TESTS}/test_offline_examples.py",
        ],
    ),
    "semantic-kernel": (["semantic-kernel"], [f"{TESTS}/test_semantic_kernel.py", f"{TESTS}/test_offline_examples.py"]),
    "openai-agents": (["openai-agents"], [f"{TESTS}/test_openai_agents.py", f"{TESTS}/test_offline_examples.py"]),
}


def _lock(environment: str) -> Path:
    return LOCKS / f"{environment}.txt"


@nox.session(reuse_venv=True)
@nox.parametrize("environment", list(ENVIRONMENTS))
def frameworks(session: nox.Session, environment: str) -> None:
    lock = _lock(environment)
    stamp = Path(str(session.virtualenv.location)) / "tokentail-lock.sha256"
    digest = hashlib.sha256(lock.read_bytes() + sys.version.encode()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        session.install("--quiet", "--requirement", str(lock))
        stamp.write_text(digest)  # only once the whole lock is in
    session.install("--quiet", "--no-deps", "--editable", ".")
    # In parallel (each test has its own processes, and mostly waits for them), under coverage.
    # A process a core per environment: the tests mostly wait, and each process collects and imports
    # the framework first (seconds of a core); the main suite runs beside them.
    session.run("coverage", "run", "-m", "pytest", *(session.posargs or ["-n", "2", *ENVIRONMENTS[environment][1]]))


@nox.session
@nox.parametrize("environment", list(ENVIRONMENTS))
def lock(session: nox.Session, environment: str) -> None:
    """Resolve the environment's extras afresh and pin what they installed."""
    extras, _ = ENVIRONMENTS[environment]
    session.install("--quiet", f".[pytest,{','.join(extras)}]")
    frozen = session.run("python", "-m", "pip", "freeze", "--exclude", "tokentail", silent=True)
    if frozen is None:  # nox --install-only runs nothing
        return
    header = f"# nox -s lock: the extras {', '.join(extras)} and pytest, resolved on Python {sys.version.split()[0]}\n"
    _lock(environment).write_text(header + str(frozen))
