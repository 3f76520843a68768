"""The distribution as a user gets it: the sdist, and the wheel built from it (`python -m build`),
checked with twine, installed into a clean virtualenv outside the repository, and used from a
directory that holds a `worker.py`, a `shared/` package and a `gateway.py` of the user's own."""

import os
import signal
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import httpx2
import pytest

from tests.e2e.conftest import wait_until_ready
from tests.support.installed import requirement_closure, see_distributions
from tests.unit.project.test_layout import INSTALLED_INSIDE
from tokentail.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
VERSION = "0.1.0"

# A user's project, as common as names get: each module says whose it is.
USER_FILES = {
    "worker.py": "WHOSE = 'the user'\n",
    "gateway.py": "WHOSE = 'the user'\n",
    "shared/__init__.py": "WHOSE = 'the user'\n",
}


def _run(*command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", out, ROOT)  # the sdist, then the wheel from the sdist
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    (found,) = dist.glob("*.whl")
    return found


def _requires_dist(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = (name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        return Parser().parsestr(archive.read(metadata).decode()).get_all("Requires-Dist", [])


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean virtualenv, outside the repository, with the wheel installed alone (--no-deps --no-index)
    beside exactly the distributions its Requires-Dist reaches (tests/support/installed.py)."""
    venv = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", venv)
    see_distributions(
        venv, requirement_closure(_requires_dist(wheel)), tmp_path_factory.mktemp("requirements") / "site"
    )
    install = ("install", "--quiet", "--disable-pip-version-check", "--no-deps", "--no-index")
    _run(venv / "bin" / "python", "-m", "pip", *install, wheel)
    return venv


@pytest.fixture
def user_project(tmp_path: Path) -> Path:
    for name, text in USER_FILES.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def _clean_env() -> dict[str, str]:
    """The user's environment: none of the test run's settings, keys or paths."""
    drop = ("TOKENTAIL_", "OPENAI_", "ANTHROPIC_", "PYTHON", "COV_", "COVERAGE_", "VIRTUAL_ENV")
    return {key: value for key, value in os.environ.items() if not key.startswith(drop)}


def test_the_wheel_holds_one_import_name_with_its_data_and_nothing_of_the_tests(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {name.split("/")[0] for name in names} == {"tokentail", f"tokentail-{VERSION}.dist-info"}
    expected = {f"tokentail/{path.relative_to(ROOT / 'tokentail')}" for path in (ROOT / "tokentail").rglob("*.py")}
    for folder in INSTALLED_INSIDE:
        expected |= {f"tokentail/{path.relative_to(ROOT)}" for path in (ROOT / folder).rglob("*.py")}
    expected |= {f"tokentail/{path.relative_to(ROOT)}" for path in (ROOT / "shared").rglob("*.lua")}
    static = (ROOT / "gateway" / "static").rglob("*")
    expected |= {f"tokentail/{path.relative_to(ROOT)}" for path in static if path.is_file()}
    expected.add("tokentail/py.typed")
    assert sorted(expected - names) == []  # every module, script, static file and the typing marker
    assert sorted(name for name in names - expected if not name.startswith(f"tokentail-{VERSION}.dist-info/")) == []
    assert not any("tests" in name.split("/") for name in names)


def test_the_sdist_and_the_wheel_pass_twine_s_checks(dist: Path) -> None:
    _run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()))


def test_the_sdist_holds_the_folders_the_wheel_is_built_from(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    names = {name.split("/", 1)[1] for name in tarfile.open(sdist).getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "tokentail/__init__.py"} <= names
    assert {f"{folder}/__init__.py" for folder in INSTALLED_INSIDE} <= names


def test_the_public_api_imports_beside_the_user_s_own_worker_shared_and_gateway(venv: Path, user_project: Path) -> None:
    code = (
        "import tokentail, worker, shared, gateway\n"
        "from tokentail import *\n"
        "from tokentail import RunContext, tool, Agent\n"
        "assert (worker.WHOSE, shared.WHOSE, gateway.WHOSE) == ('the user',) * 3\n"
        "assert tokentail.RunContext.__module__ == 'tokentail.worker.run.context'\n"
        "print(sorted(tokentail.__all__))\n"
    )
    printed = _run(venv / "bin" / "python", "-c", code, cwd=user_project, env=_clean_env())
    assert "RunContext" in printed


@pytest.mark.parametrize("name", INSTALLED_INSIDE)
def test_no_other_top_level_name_is_installed(venv: Path, tmp_path: Path, name: str) -> None:
    done = subprocess.run(
        [venv / "bin" / "python", "-c", f"import {name}"],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and f"No module named '{name}'" in done.stderr


@pytest.mark.parametrize("command", ["worker", "gateway", "dev"])
def test_the_commands_answer_help(venv: Path, user_project: Path, command: str) -> None:
    assert "Usage:" in _run(venv / "bin" / "tokentail", command, "--help", cwd=user_project, env=_clean_env())


@pytest.fixture
def dev(venv: Path, user_project: Path) -> Iterator[str]:
    """`tokentail dev`, run from the user's directory as the README says; its URL."""
    port = free_port()
    process = subprocess.Popen(
        [venv / "bin" / "tokentail", "dev", "--port", str(port)],
        cwd=user_project,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", process, timeout=60)
        yield f"http://127.0.0.1:{port}"
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0].decode()
        assert process.returncode == 0, output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_tokentail_dev_from_the_wheel_answers_a_run(dev: str) -> None:
    with httpx2.Client(base_url=dev, timeout=30) as client:
        created = client.post("/v1/sessions", json={"input": "hello", "params": {"tokens": 5}})
        assert created.status_code == 201, created.text
        with client.stream("GET", created.json()["events_url"]) as response:
            body = response.read().decode()
    assert "event: message.delta" in body and "event: run.completed" in body
