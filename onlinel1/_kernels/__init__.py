"""The compiled kernels (Cython): ``csr``, ``hashing``, ``parse``, ``sgd``
and ``store``.

They are built by ``pip install`` (or ``pip install -e .`` /
``python setup.py build_ext --inplace`` in a checkout).  A source tree
without them (a fresh checkout) that Python imports first, because it is
the current directory, shadows an installed onlinel1: importing it then
raises an ``ImportError`` that says so and what to do, rather than
``cannot import name 'csr'``.
"""
from __future__ import annotations

import importlib.machinery
import os
import sys

#: The compiled modules of this package.
MODULES = ("csr", "hashing", "parse", "sgd", "store")

_HERE = os.path.dirname(os.path.abspath(__file__))


def _built(directory: str, module: str) -> bool:
    """Whether ``directory`` holds the extension module ``module``, built
    for this interpreter."""
    return any(os.path.isfile(os.path.join(directory, module + suffix))
               for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def _installed_elsewhere() -> str | None:
    """The ``onlinel1/_kernels`` directory of another copy of onlinel1 on
    ``sys.path`` with its kernels built (the installed one), if any."""
    for entry in sys.path:
        directory = os.path.join(os.path.abspath(entry or os.curdir), "onlinel1", "_kernels")
        if os.path.normcase(directory) != os.path.normcase(_HERE) \
                and all(_built(directory, m) for m in MODULES):
            return directory
    return None


def missing_message(missing: list[str]) -> str:
    """What to tell a user whose kernels ``missing`` are not built here."""
    package = os.path.dirname(_HERE)
    tree = os.path.dirname(package)
    installed = _installed_elsewhere()
    head = (f"onlinel1's compiled kernels ({', '.join(missing)}) are not built in {package}.")
    if installed is not None:
        head += (f" This source tree shadows the installed onlinel1 (in "
                 f"{os.path.dirname(os.path.dirname(installed))}): Python imports the "
                 f"directory it starts in first.")
    return (f"{head} Either run Python from another directory than {tree}, or build the "
            f"kernels in place: `pip install -e .` (or `python setup.py build_ext --inplace`) "
            f"in {tree}.")


_missing = [m for m in MODULES if not _built(_HERE, m)]
if _missing:
    raise ImportError(missing_message(_missing), name=__name__, path=_HERE)
