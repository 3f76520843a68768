"""A virtualenv that sees exactly the distributions some requirements resolve to, without a package index.

A pip resolve from the index took three minutes of CI per virtualenv. The distributions the test run has
installed already are those a resolve would pick (the project's own requirements made them), so the
closure of the requirements is found among them, their top-level files are linked into one folder, and a
.pth file puts that folder on the virtualenv's path. Nothing else of the test run's is seen: a module the
code imports but the requirements do not reach is missing, as it would be for a user. (A namespace package
such as `google` is linked whole, the test run's other portions of it included.)"""

from collections.abc import Iterable
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement


def requirement_closure(requirements: Iterable[str], extras: Iterable[str] = ()) -> list[Distribution]:
    """The installed distributions the requirements reach; `extras` chooses the top level's optional ones."""
    pending = [(Requirement(line), extra) for line in requirements for extra in ("", *extras)]
    found: dict[str, Distribution] = {}
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        try:
            dist = distribution(requirement.name)
        except PackageNotFoundError:
            raise AssertionError(f"{requirement} is required but not installed in the test run") from None
        assert dist.version in requirement.specifier, f"{requirement}: the test run has {dist.version}"
        key = dist.metadata["Name"].lower()
        if key not in found:
            found[key] = dist
            pending += [
                (Requirement(line), chosen) for line in dist.requires or [] for chosen in ("", *requirement.extras)
            ]
        elif requirement.extras:  # reached again with extras: their requirements too
            pending += [(Requirement(line), chosen) for line in dist.requires or [] for chosen in requirement.extras]
    return list(found.values())


def see_distributions(venv: Path, dists: list[Distribution], folder: Path) -> None:
    """Links the distributions' top-level files (modules, packages, .dist-info) into `folder`, on the venv's path."""
    folder.mkdir()
    for dist in dists:
        assert dist.files is not None, f"{dist.metadata['Name']} has no RECORD to find its files by"
        for top in {file.parts[0] for file in dist.files if file.parts[0] != ".."}:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not top.endswith(".pth") and not (folder / top).exists():
                (folder / top).symlink_to(source)
    (site_packages,) = venv.glob("lib/python*/site-packages")
    (site_packages / "requirements.pth").write_text(f"{folder}\n")
