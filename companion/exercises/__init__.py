"""Checkers for the course's code exercises.

    >>> from companion.exercises import check
    >>> check("ch01-central-difference", my_function)

Each chapter registers its exercises in ``companion/exercises/chNN.py``; every
such module is imported here, so adding a chapter's exercises means adding
one file.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._core import EXERCISES, Case, CheckResult, allclose, check, isclose_scalar, register

for _module in pkgutil.iter_modules(__path__):
    if _module.name.startswith("ch"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["EXERCISES", "Case", "CheckResult", "allclose", "check", "isclose_scalar", "register"]
