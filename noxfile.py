"""The framework adapters' tests (`.venv/bin/nox`; `.ci/run` runs every session). One framework's
tests: `.venv/bin/nox -s "frameworks(environment='shared')" -- tests/e2e/frameworks/test_haystack.py`.

Framework packages never enter tokentail's core dependencies. The extras that leave every version
tokentail uses alone share one virtualenv (which also shows that they can be installed together);
those that pin one of them at another version each get their own, so no conflict reaches the core
environment: semantic-kernel pins pydantic<2.14 and websockets<17, openai-agents websockets<17.
The tests are end to end: a real redis-server, gateway and worker processes.
"""

import nox

nox.options.default_venv_backend = "venv"  # pip: it honours the machine's index and constraints
nox.options.error_on_missing_interpreters = True

TESTS = "tests/e2e/frameworks"
# A virtualenv -> the extras (pyproject.toml) installed in it, and their tests.
ENVIRONMENTS = {
    "shared": (
        ["langgraph", "langchain", "haystack", "pydantic-ai"],
        [
            f"{TESTS}/test_langgraph.py",
            f"{TESTS}/test_langchain.py",
            f"{TESTS}/test_haystack.py",
            f"{TESTS}/test_pydantic_ai.py",
        ],
    ),
    "semantic-kernel": (["semantic-kernel"], [f"{TESTS}/test_semantic_kernel.py"]),
    "openai-agents": (["openai-agents"], [f"{TESTS}/test_openai_agents.py"]),
}


@nox.session
@nox.parametrize("environment", list(ENVIRONMENTS))
def frameworks(session: nox.Session, environment: str) -> None:
    extras, tests = ENVIRONMENTS[environment]
    session.install("--quiet", "--editable", f".[pytest,{','.join(extras)}]")
    session.run("pytest", *(session.posargs or tests))
