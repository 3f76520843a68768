"""pyproject.toml installs every package folder of the repository, under the one import name, and
editors see them so; the framework environments' locks hold versions their extras allow."""

import runpy
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.unit.project.test_layout import INSTALLED_INSIDE, module_name

ROOT = Path(__file__).resolve().parents[3]


def test_every_package_folder_is_installed_and_under_tokentail() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {
        module_name(init)
        for top in ("tokentail", *INSTALLED_INSIDE)
        for init in (ROOT / top).rglob("__init__.py")
        if "node_modules" not in init.parts
    }
    assert set(setuptools["packages"]) == folders
    assert setuptools["package-dir"] == {f"tokentail.{folder}": folder for folder in INSTALLED_INSIDE}


def test_editors_see_the_package_as_installed_in_the_view_that_install_lays_out() -> None:
    # pyright (so VS Code's Pylance) and mypy find tokentail.gateway, .worker and .shared in links laid
    # out by ./scripts/install, which the tests run after: one for each entry of tokentail/ and of package-dir.
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    installed = {entry.name: entry for entry in (ROOT / "tokentail").iterdir()}
    for name, folder in tool["setuptools"]["package-dir"].items():
        installed[name.removeprefix("tokentail.")] = ROOT / folder
    view = ROOT / tool["pyright"]["extraPaths"][0] / "tokentail"
    shown = {link.name: link.resolve() for link in view.iterdir() if link.name != "__pycache__"}
    assert shown == {name: path.resolve() for name, path in installed.items() if name != "__pycache__"}


def test_each_framework_environment_s_lock_satisfies_the_extras_it_installs() -> None:
    # A bound changed in pyproject.toml and a lock not made again (`.venv/bin/nox -s lock`) would test
    # versions users cannot get.
    environments = runpy.run_path(str(ROOT / "noxfile.py"))["ENVIRONMENTS"]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for environment, (names, _) in environments.items():
        lock = ROOT / "tests" / "e2e" / "frameworks" / "locks" / f"{environment}.txt"
        pins = dict(line.split("==") for line in lock.read_text().splitlines() if line and not line.startswith("#"))
        pinned = {canonicalize_name(name): Version(version) for name, version in pins.items()}
        for requirement in (Requirement(text) for extra in ("pytest", *names) for text in extras[extra]):
            if requirement.marker is None or requirement.marker.evaluate():
                version = pinned.get(canonicalize_name(requirement.name))
                assert version is not None and version in requirement.specifier, (environment, str(requirement))
