"""Checkers for the course's code exercises.

    >>> from companion.exercises import check
    >>> check("ch01-derivative", my_function)

Each chapter registers its exercises in ``companion/exercises/chNN.py``. A
chapter's checkers are imported when one of its exercises is first asked for
(``check("ch03-...")`` imports ``ch03``), so importing this package stays
cheap: the chapters' checkers may import torch, this package does not.
"""

from __future__ import annotations

from ._core import (EXERCISES, Case, CheckResult, Outcome, all_exercises, allclose, check,
                    diagnose, get, isclose_scalar, judge, load_checkers, register)

__all__ = ["EXERCISES", "Case", "CheckResult", "Outcome", "all_exercises", "allclose", "check",
           "diagnose", "get", "isclose_scalar", "judge", "load_checkers", "register"]
