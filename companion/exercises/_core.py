"""The exercise registry and ``check``: run a student's function on cases and
report the first case that differs from the reference, with a hint.

A chapter's checkers live in ``companion/exercises/chNN.py``; each calls
``register`` once per code exercise, with the visible cases a student's
``check`` runs and, as ``hidden``, a function that draws further cases from a
random generator. Hidden cases are drawn by the grader at grading time from
the instructor's secret, so no fixed set of them ships with the package.
(``Case(hidden=True)`` is the older form, being phased out.)
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class Case:
    """One call of the student's function: ``fn(*args, **kwargs)``."""

    name: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    hint: str = ""
    hidden: bool = False
    raises: type[BaseException] | None = None  # the call must raise this instead of returning


Compare = Callable[[Any, Any], bool]


def allclose(rtol: float = 1e-6, atol: float = 1e-8) -> Compare:
    """Compare numbers, arrays or tensors (or tuples/lists of them) elementwise."""

    def compare(expected: Any, received: Any) -> bool:
        if isinstance(expected, (tuple, list)):
            return (
                isinstance(received, (tuple, list))
                and len(received) == len(expected)
                and all(compare(e, r) for e, r in zip(expected, received))
            )
        try:
            e = np.asarray(_to_numpy(expected), dtype=np.float64)
            r = np.asarray(_to_numpy(received), dtype=np.float64)
        except (TypeError, ValueError):
            return False
        return e.shape == r.shape and bool(np.allclose(r, e, rtol=rtol, atol=atol, equal_nan=True))

    return compare


def _to_numpy(x: Any) -> Any:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        return x.detach().cpu().numpy()
    return x


@dataclass(frozen=True)
class Exercise:
    """A code exercise: the reference behaviour, the cases, how to compare."""

    id: str
    reference: Callable[..., Any]
    cases: Callable[[], Sequence[Case]]
    compare: Compare = field(default_factory=allclose)
    hint: str = ""
    hidden: Callable[[np.random.Generator], Sequence[Case]] | None = None

    def visible_cases(self) -> list[Case]:
        """The cases a student's ``check`` runs."""
        return [c for c in self.cases() if not c.hidden]

    def hidden_cases(self, rng: np.random.Generator) -> list[Case]:
        """Cases drawn from ``rng`` (the grader seeds it from the instructor's secret)."""
        drawn = list(self.hidden(rng)) if self.hidden is not None else []
        return [c for c in self.cases() if c.hidden] + drawn


EXERCISES: dict[str, Exercise] = {}
"""The exercises registered so far; :func:`get` and :func:`all_exercises` load chapters on demand."""


def register(
    id: str,
    reference: Callable[..., Any],
    cases: Callable[[], Sequence[Case]],
    compare: Compare | None = None,
    hint: str = "",
    hidden: Callable[[np.random.Generator], Sequence[Case]] | None = None,
) -> Exercise:
    """Add a code exercise to the registry (called at import of ``chNN.py``).

    ``cases()`` returns the visible cases; ``hidden(rng)`` draws the cases
    that run only at grading time. The id starts with the chapter's module
    name: ``"ch03-xavier"`` lives in ``ch03.py``.
    """
    if id in EXERCISES:
        raise ValueError(f"register: exercise id {id!r} is already registered")
    exercise = Exercise(id, reference, cases, compare or allclose(), hint, hidden)
    EXERCISES[id] = exercise
    return exercise


def _load_chapter(exercise_id: str) -> None:
    module = exercise_id.split("-", 1)[0]
    if module.startswith("ch") and module[2:].isdigit():
        try:
            importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"{__package__}.{module}":
                raise


def get(exercise_id: str) -> Exercise:
    """The registered exercise ``exercise_id``, importing its chapter's checkers if needed."""
    if exercise_id not in EXERCISES:
        _load_chapter(exercise_id)
    if exercise_id not in EXERCISES:
        raise ValueError(f"unknown exercise {exercise_id!r}; expected one of {sorted(all_exercises())}")
    return EXERCISES[exercise_id]


def all_exercises() -> dict[str, Exercise]:
    """Every exercise of every chapter (imports all the chapters' checkers)."""
    for module in pkgutil.iter_modules([str(__import__("pathlib").Path(__file__).parent)]):
        if module.name.startswith("ch"):
            importlib.import_module(f"{__package__}.{module.name}")
    return EXERCISES


@dataclass
class CaseResult:
    case: str
    passed: bool
    message: str


@dataclass
class CheckResult:
    """What ``check`` found. ``passed`` is True when every case matched."""

    exercise: str
    results: list[CaseResult]

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def message(self) -> str:
        failed = [r for r in self.results if not r.passed]
        if not self.results:
            return f"{self.exercise}: no cases were run"
        if not failed:
            return f"{self.exercise}: all {len(self.results)} cases passed. Well done!"
        first = failed[0]
        return (
            f"{self.exercise}: {len(failed)} of {len(self.results)} cases failed.\n"
            f"First failure, case '{first.case}':\n{first.message}"
        )

    def __str__(self) -> str:
        return self.message

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how IPython shows it
        printer.text(self.message)


def _short(value: Any, limit: int = 300) -> str:
    text = repr(_to_numpy(value))
    return text if len(text) <= limit else text[:limit] + " ..."


def _run_case(exercise: Exercise, fn: Callable[..., Any], case: Case) -> CaseResult:
    hint = case.hint or exercise.hint
    hint_line = f"\nHint: {hint}" if hint else ""
    if case.raises is not None:
        return _run_raising_case(fn, case, hint_line)
    expected = exercise.reference(*case.args, **case.kwargs)
    try:
        received = fn(*case.args, **case.kwargs)
    except NotImplementedError:
        return CaseResult(case.name, False, "not implemented yet (the function raises NotImplementedError)")
    except Exception as err:  # a student's bug must become a report, not a crash
        where = traceback.extract_tb(err.__traceback__)[-1]
        return CaseResult(
            case.name,
            False,
            f"raised {type(err).__name__}: {err} (line {where.lineno} of {where.name}){hint_line}",
        )
    try:
        ok = exercise.compare(expected, received)
    except Exception as err:
        ok, hint_line = False, f"\n(comparing raised {type(err).__name__}: {err}){hint_line}"
    if ok:
        return CaseResult(case.name, True, "passed")
    return CaseResult(
        case.name,
        False,
        f"expected {_short(expected)}\nreceived {_short(received)}{hint_line}",
    )


def _run_raising_case(fn: Callable[..., Any], case: Case, hint_line: str) -> CaseResult:
    expected = case.raises.__name__
    try:
        received = fn(*case.args, **case.kwargs)
    except case.raises:
        return CaseResult(case.name, True, "passed")
    except NotImplementedError:
        return CaseResult(case.name, False, "not implemented yet (the function raises NotImplementedError)")
    except Exception as err:
        return CaseResult(case.name, False, f"expected {expected} to be raised\nreceived {type(err).__name__}: {err}{hint_line}")
    return CaseResult(case.name, False, f"expected {expected} to be raised\nreceived the value {_short(received)}{hint_line}")


def check(exercise_id: str, fn: Callable[..., Any], include_hidden: bool = False) -> CheckResult:
    """Run ``fn`` on the exercise's cases and compare with the reference.

    Returns a ``CheckResult``; in a notebook it displays as a short report:
    either "all N cases passed" or the first failing case with the expected
    and received values and a hint. It never raises because of the student's
    code; an unknown id or a non-callable raises a ValueError/TypeError.
    """
    try:
        exercise = get(exercise_id)
    except ValueError as err:
        raise ValueError(f"check: {err}") from None
    if not callable(fn):
        raise TypeError(f"check: expected a function for {exercise_id!r}, got {type(fn).__name__}")
    cases = exercise.visible_cases()
    if include_hidden:
        cases += exercise.hidden_cases(np.random.default_rng(0))
    return CheckResult(exercise_id, [_run_case(exercise, fn, c) for c in cases])


def isclose_scalar(rtol: float = 1e-6, atol: float = 1e-8) -> Compare:
    """Compare two real numbers."""

    def compare(expected: Any, received: Any) -> bool:
        try:
            return math.isclose(float(received), float(expected), rel_tol=rtol, abs_tol=atol)
        except (TypeError, ValueError):
            return False

    return compare
