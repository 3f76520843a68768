"""Another revision's gateway, for `bench.py --baseline REV`: its tree, laid out as the package is
installed, to run with this venv's interpreter (harness.Stack's `gateway_tree`).

The repository keeps tokentail.gateway, .shared and .worker in the folders gateway/, shared/ and
worker/ beside tokentail/ (pyproject.toml's package-dir); the editable install maps them for this
tree only. So the revision is extracted (`git archive`) and viewed through links, as
./scripts/install lays out for pyright and mypy: view/tokentail/ holds tokentail/'s entries and
gateway, shared, worker. With the view first on the import path, `import tokentail.gateway` finds
the revision's (the editable install's finder comes after the path's), and the check below says so
before anything is measured.
"""

import subprocess
import sys
from pathlib import Path

from harness import ROOT

PACKAGES = ("gateway", "shared", "worker")


def commit_of(rev: str) -> str | None:
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=ROOT, capture_output=True, text=True
    )
    return found.stdout.strip() if found.returncode == 0 else None


def gateway_tree(commit: str, into: Path) -> Path:
    """The view of `commit`'s package under `into` (made there), checked to be what imports."""
    source, view = into / "source", into / "view"
    source.mkdir(parents=True)
    (view / "tokentail").mkdir(parents=True)
    archive = subprocess.Popen(["git", "archive", commit], cwd=ROOT, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(source)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise RuntimeError(f"git archive {commit} failed")
    # Compiled now, as this tree's modules were by earlier runs: not on the gateway's first requests.
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *(str(source / name) for name in ("tokentail", *PACKAGES))],
        check=True,
    )
    for entry in (source / "tokentail").iterdir():
        (view / "tokentail" / entry.name).symlink_to(entry)
    for package in PACKAGES:
        (view / "tokentail" / package).symlink_to(source / package)
    # `-c`, as `-m`, puts the working directory first on the import path.
    check = "import importlib, sys; print(*(importlib.import_module(name).__file__ for name in sys.argv[1:]))"
    names = ["tokentail", "tokentail.gateway.app", *(f"tokentail.{package}" for package in PACKAGES)]
    imported = subprocess.run(
        [sys.executable, "-c", check, *names], cwd=view, capture_output=True, text=True, check=True
    ).stdout.split()
    if strays := [path for path in imported if not path.startswith(f"{view}/")]:
        raise RuntimeError(f"the baseline's view imports {strays}, not from its own tree")
    return view
