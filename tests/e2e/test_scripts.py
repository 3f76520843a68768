"""The README's scripts as a newcomer runs them, in a copy of the repository with a .venv of its own."""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.support.installed import requirement_closure, see_distributions

ROOT = Path(__file__).resolve().parents[2]
EXTRAS = ("mcp", "otel")  # the extras ./scripts/dev asks for
OFFLINE = {"PIP_INDEX_URL": "http://127.0.0.1:9/", "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}


class Installed(NamedTuple):
    checkout: Path
    said: str  # what the first ./scripts/install printed (stderr)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The repository's files (tracked, and new ones not ignored), installed once as ./scripts/dev does."""
    copy = tmp_path_factory.mktemp("checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    for name in listed.stdout.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    # The .venv a first install makes, seeing the distributions pip would resolve, already installed in the
    # test run (tests/support/installed.py): pip still runs, finds them there and installs the project
    # alone, in seconds rather than a resolve's three minutes (CI's own ./scripts/install resolves for real).
    subprocess.run([sys.executable, "-m", "venv", copy / ".venv"], check=True)
    project = tomllib.loads((copy / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *(line for extra in EXTRAS for line in project["optional-dependencies"][extra])]
    see_distributions(copy / ".venv", requirement_closure(wanted), tmp_path_factory.mktemp("requirements") / "site")
    first = _run(copy, "./scripts/install", ",".join(EXTRAS))
    return Installed(copy, first.stderr)


@pytest.fixture(scope="module")
def checkout(installed: Installed) -> Path:
    return installed.checkout


def _run(checkout: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENTAIL_", "VIRTUAL_ENV", "COVERAGE_"))}
    done = subprocess.run(command, cwd=checkout, env={**clean, **env}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
    return done


def test_the_dev_script_starts_offline_once_installed_and_installs_again_when_pyproject_changes(
    checkout: Path,
) -> None:
    # It re-installed from the package index on every start: with no network it failed.
    assert "Usage:" in _run(checkout, "./scripts/dev", "--help", **OFFLINE).stdout
    pyproject = checkout / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n# a dependency changed\n")
    again = subprocess.run(["./scripts/install"], cwd=checkout, env={**os.environ, **OFFLINE}, capture_output=True)
    assert again.returncode != 0, "a changed pyproject.toml must be installed again (here, from no index: it fails)"


def test_the_first_install_says_so_before_its_minute_of_pip(installed: Installed) -> None:
    # The first ./scripts/dev printed nothing of its own for about a minute while pip ran --quiet.
    assert "install: installing tokentail[mcp,otel]" in installed.said
