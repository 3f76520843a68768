"""The framework adapters' tests, each framework in a virtualenv of its own (`nox`, or `nox -s
"frameworks(langgraph)"`; `.ci/run` runs them all).

Framework packages never enter tokentail's core dependencies, and some of them pin what the core
environment uses at other versions (semantic-kernel: pydantic<2.14, websockets<17; openai-agents:
websockets): so each extra is installed beside tokentail in an environment of its own, and its
end-to-end tests (real redis-server, gateway and worker processes) run there.
"""

import nox

nox.options.default_venv_backend = "venv"  # pip: it honours the machine's index and constraints
nox.options.error_on_missing_interpreters = True

# The optional extra (pyproject.toml) -> its tests.
FRAMEWORKS = {
    "langgraph": "tests/e2e/frameworks/test_langgraph.py",
    "langchain": "tests/e2e/frameworks/test_langchain.py",
    "semantic-kernel": "tests/e2e/frameworks/test_semantic_kernel.py",
    "pydantic-ai": "tests/e2e/frameworks/test_pydantic_ai.py",
    "openai-agents": "tests/e2e/frameworks/test_openai_agents.py",
    "haystack": "tests/e2e/frameworks/test_haystack.py",
}


@nox.session
@nox.parametrize("framework", list(FRAMEWORKS))
def frameworks(session: nox.Session, framework: str) -> None:
    session.install("--quiet", "--editable", f".[pytest,{framework}]")
    session.run("pytest", FRAMEWORKS[framework], *session.posargs)
