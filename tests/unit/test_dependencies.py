"""Every module the package imports at run time comes with a default install.

The package's own import statements (module level and inside functions) are read from
its source; each third-party module must be provided by a distribution that
``pip install ipython-parallel-kernel`` brings, directly or through the requirements
of those distributions (read from their installed metadata), or be one of the few
optional modules listed here, each with the extra or the reason that makes it optional.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ipython_parallel_kernel"

#: Imported only where an extra (or the system) provides them; None: no extra has them.
OPTIONAL = {
    "PySide6": "qt",  # --gui qt
    "qreactor": "qt",  # --gui qt
    "wx": None,  # --gui wx: Debian's python3-wxgtk4.0, or pip install wxPython elsewhere
    "numpy": None,  # gather() of arrays: only for values of user code that has numpy
    "matplotlib": None,  # figures: only once user code has imported pyplot
    "joblib": None,  # register_joblib_backend(): for joblib's users, who have it
    "dill": None,  # use_dill(): for those who ask for it, who install it (it says so)
    "mpi4py": "mpi",  # kernels as MPI ranks (--launcher mpi)
}
#: Needed at run time through another package's module, not imported by name here:
#: twisted.internet.ssl (TLS kernels and clients) loads these.
INDIRECT = ("OpenSSL", "service_identity")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules() -> dict[str, set[str]]:
    """Top-level modules imported anywhere in the package, and the files importing each."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("__future__", PACKAGE.name):
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def closure(requirements: Iterable[str]) -> set[str]:
    """Normalised names of the distributions ``requirements`` install, transitively."""
    seen: set[str] = set()
    todo = [(Requirement(text), "") for text in requirements]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = _normal(requirement.name)
        extras = sorted(requirement.extras)
        key = f"{name}[{','.join(extras)}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            for wanted in ["", *extras]:
                todo.append((Requirement(text), wanted))
    return {key.split("[")[0] for key in seen}


def providers(module: str) -> set[str]:
    """Normalised names of the installed distributions that provide ``module``."""
    return {_normal(d) for d in metadata.packages_distributions().get(module, [])}


def test_every_imported_module_comes_with_the_dependencies():
    """What the package imports is installed by its dependencies (optional ones excepted)."""
    installed = closure(project()["dependencies"])
    missing = []
    for module, files in sorted(imported_modules().items()):
        if module in OPTIONAL:
            continue
        if not providers(module) & installed:
            where = ", ".join(sorted(files))
            missing.append(f"{module} (imported by {where}; provided by {providers(module)})")
    for module in INDIRECT:
        if not providers(module) & installed:
            missing.append(f"{module} (loaded by twisted.internet.ssl)")
    assert not missing, "not brought by [project] dependencies: " + "; ".join(missing)


@pytest.mark.parametrize(("module", "extra"), [(m, e) for m, e in OPTIONAL.items() if e])
def test_optional_modules_come_with_their_extra(module, extra):
    """A module left out of the dependencies is installed by the extra that needs it."""
    assert providers(module), f"{module} is not installed here"
    assert providers(module) & closure(project()["optional-dependencies"][extra])


def test_the_optional_list_is_current():
    """Every module listed as optional is still imported somewhere."""
    assert set(OPTIONAL) <= set(imported_modules())
