"""The exercise registry and ``check``: run a student's function on cases and
report the first case that differs from the reference, with a hint.

A chapter's checkers live in ``companion/exercises/chNN.py``; each calls
``register`` once per code exercise, with the visible cases a student's
``check`` runs and, as ``hidden``, a function that draws further cases from a
numpy random generator. The grader (``python -m companion.coursework grade``)
seeds that generator from the instructor's secret at grading time, so no fixed
set of hidden cases ships with the package, and it decides every verdict in its
own process: the student's kernel only hands back what the function returned
(:class:`Outcome`), and :func:`judge` compares it with the reference's.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

PRACTICE_SEED = 20240101
"""The public seed ``check(..., include_hidden=True)`` draws practice hidden cases with (never the grader's)."""


@dataclass(frozen=True)
class Case:
    """One call of the student's function: ``fn(*args, **kwargs)``."""

    name: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    hint: str = ""
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


def isclose_scalar(rtol: float = 1e-6, atol: float = 1e-8) -> Compare:
    """Compare two real numbers."""

    def compare(expected: Any, received: Any) -> bool:
        try:
            return math.isclose(float(received), float(expected), rel_tol=rtol, abs_tol=atol)
        except (TypeError, ValueError):
            return False

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
        return list(self.cases())

    def hidden_cases(self, rng: np.random.Generator) -> list[Case]:
        """The cases that run only at grading: drawn from ``rng`` (seeded from the instructor's secret)."""
        return list(self.hidden(rng)) if self.hidden is not None else []

    def grading_cases(self, rng: np.random.Generator) -> list[tuple[Case, bool]]:
        """Every case the grader runs, in order, each with whether it is hidden."""
        return [(c, False) for c in self.visible_cases()] + [(c, True) for c in self.hidden_cases(rng)]


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
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name.startswith("ch"):
            importlib.import_module(f"{__package__}.{module.name}")
    return EXERCISES


_LOADED_FILES: dict[str, Any] = {}


def load_checkers(path: str | Path) -> None:
    """Import a checker file outside the package (an instructor's own exercises); it calls :func:`register`."""
    import hashlib
    import importlib.util

    path = str(Path(path).resolve())
    if path in _LOADED_FILES:
        return
    name = "companion_checkers_" + hashlib.sha256(path.encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"load_checkers: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _LOADED_FILES[path] = module


# -- what one call did, as plain data ------------------------------------------
@dataclass
class Outcome:
    """What one call of a function did: returned a value, raised, or did not run.

    ``kind`` is ``"returned"``, ``"raised"``, ``"not_implemented"``, or a
    grader-side reason the call has no result (``"timeout"``, ``"no_result"``).
    ``error_types`` lists the names in the raised exception's class hierarchy,
    so a ``Case(raises=ValueError)`` accepts a subclass without importing it.
    """

    kind: str
    value: Any = None
    error_types: tuple[str, ...] = ()
    message: str = ""
    line: int | None = None
    where: str = ""

    @property
    def error_type(self) -> str:
        return self.error_types[0] if self.error_types else ""


def call(fn: Callable[..., Any], case: Case) -> Outcome:
    """Run ``fn(*case.args, **case.kwargs)`` and record what it did; never raises for the function's errors."""
    try:
        value = fn(*case.args, **case.kwargs)
    except NotImplementedError:
        return Outcome("not_implemented")
    except Exception as err:  # a student's bug must become a report, not a crash
        frames = traceback.extract_tb(err.__traceback__)
        where = frames[-1] if frames else None
        names = tuple(k.__name__ for k in type(err).__mro__ if k not in (object, BaseException))
        return Outcome("raised", error_types=names, message=str(err)[:2000],
                       line=where.lineno if where else None, where=where.name if where else "")
    return Outcome("returned", value)


@dataclass
class CaseResult:
    case: str
    passed: bool
    message: str
    hidden: bool = False


def _short(value: Any, limit: int = 300) -> str:
    text = repr(_to_numpy(value))
    return text if len(text) <= limit else text[:limit] + " ..."


def _describe(value: Any) -> str:
    """The type and shape of a value, without its entries."""
    x = _to_numpy(value)
    if isinstance(x, np.ndarray):
        kind = "tensor" if hasattr(value, "detach") else "array"
        return f"a {kind} of shape {tuple(x.shape)} and dtype {x.dtype}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


def _as_float_array(x: Any) -> np.ndarray | None:
    try:
        a = np.asarray(_to_numpy(x), dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return a if a.dtype != object else None


def diagnose(expected: Any, received: Any) -> str:
    """Name a common bug that turns ``expected`` into ``received``, or ``""``.

    Looks for: a different length or shape, transposed or reversed entries,
    swapped outputs, a flipped sign, a constant factor (such as a mean where
    a sum is asked for), a numpy array where a tensor is expected, or a
    lower-precision dtype.
    """
    close = allclose(rtol=1e-6, atol=1e-9)
    if isinstance(expected, (tuple, list)):
        if not isinstance(received, (tuple, list)):
            return f"expected a {type(expected).__name__} of {len(expected)} items, received {_describe(received)}"
        if len(received) != len(expected):
            return f"expected {len(expected)} items, received {len(received)}"
        if len(expected) > 1 and close(list(expected)[::-1], list(received)):
            return "the items are in reverse order (or the two outputs are swapped)"
        for i, (e, r) in enumerate(zip(expected, received)):
            if not close(e, r):
                found = diagnose(e, r)
                return f"item {i}: {found}" if found else ""
        return ""
    e, r = _as_float_array(expected), _as_float_array(received)
    if e is None or r is None:
        return "" if r is not None or e is None else f"received {_describe(received)}, not a number or array"
    notes = []
    if hasattr(expected, "detach") and not hasattr(received, "detach"):
        notes.append("returned a numpy array or number where a torch tensor is expected")
    if e.shape != r.shape:
        if e.ndim == 2 and r.shape == e.shape[::-1] and np.allclose(r.T, e, rtol=1e-6, atol=1e-9):
            return "the result is transposed"
        if e.size == r.size and np.allclose(r.reshape(e.shape), e, rtol=1e-6, atol=1e-9):
            return f"the right numbers in the wrong shape: {tuple(r.shape)} instead of {tuple(e.shape)}"
        return f"shape {tuple(r.shape)} instead of {tuple(e.shape)}"
    if e.size and np.allclose(r, -e, rtol=1e-6, atol=1e-9) and not np.allclose(e, 0):
        notes.append("the sign is flipped")
    elif e.size and np.isfinite(e).all() and np.isfinite(r).all():
        mask = np.abs(e) > 1e-12
        if mask.any():
            factor = float(np.median(r[mask] / e[mask]))
            if not math.isclose(factor, 1.0, rel_tol=1e-3) and factor != 0 \
                    and np.allclose(r, factor * e, rtol=1e-5, atol=1e-9):
                notes.append(f"off by a constant factor of {factor:.4g} (a mean instead of a sum, "
                             "or a missing 1/2 or 2?)")
        if not notes and e.ndim >= 1 and e.shape[0] > 1 and np.allclose(r, e[::-1], rtol=1e-6, atol=1e-9):
            notes.append("the entries are in reverse order")
    expected_dtype = getattr(_to_numpy(expected), "dtype", None)
    received_dtype = getattr(_to_numpy(received), "dtype", None)
    if expected_dtype is not None and received_dtype is not None and expected_dtype != received_dtype:
        notes.append(f"dtype {received_dtype} instead of {expected_dtype}")
    return "; ".join(notes)


def judge(exercise: Exercise, case: Case, expected: Outcome, received: Outcome,
          hidden: bool = False) -> CaseResult:
    """Compare what the student's function did with what the reference did, for one case.

    For a hidden case the message never shows the expected value (nor the
    inputs): it says what kind of failure it was, a diagnosis, and the hint.
    """
    hint = case.hint or exercise.hint
    hint_line = f"\nHint: {hint}" if hint else ""

    def fail(message: str) -> CaseResult:
        return CaseResult(case.name, False, message + hint_line, hidden)

    def passed() -> CaseResult:
        return CaseResult(case.name, True, "passed", hidden)

    if received.kind == "not_implemented":
        return CaseResult(case.name, False, "not implemented yet (the function raises NotImplementedError)", hidden)
    if received.kind not in ("returned", "raised"):
        return fail(received.message or f"no result ({received.kind})")
    raised = f"{received.error_type}: {received.message}"
    if received.line is not None:
        raised += f" (line {received.line} of {received.where})"
    if case.raises is not None:
        wanted = case.raises.__name__
        if received.kind == "raised" and wanted in received.error_types:
            return passed()
        got = f"received {raised}" if received.kind == "raised" else (
            f"received the value {_short(received.value)}" if not hidden else "it returned a value")
        return fail(f"expected {wanted} to be raised\n{got}")
    if expected.kind == "raised":  # a case the reference itself cannot do: the checker's bug, not the student's
        return fail(f"the reference raised {expected.error_type}: {expected.message}; tell your instructor")
    if received.kind == "raised":
        return fail(f"raised {raised}")
    try:
        ok = exercise.compare(expected.value, received.value)
    except Exception as err:
        return fail(f"comparing raised {type(err).__name__}: {err}")
    if ok:
        return passed()
    try:
        found = diagnose(expected.value, received.value)
    except Exception:
        found = ""
    diagnosis = f"\nLikely cause: {found}" if found else ""
    if hidden:
        return fail(f"received {_describe(received.value)} that differs from the reference's result{diagnosis}")
    return fail(f"expected {_short(expected.value)}\nreceived {_short(received.value)}{diagnosis}")


# -- the student's check -------------------------------------------------------
@dataclass
class CheckResult:
    """What ``check`` found. ``passed`` is True when every case matched."""

    exercise: str
    results: list[CaseResult]
    n_hidden: int = 0  # hidden cases the grader runs on top of these

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def message(self) -> str:
        failed = [r for r in self.results if not r.passed]
        later = (f"\n{self.n_hidden} more hidden case{'s' if self.n_hidden != 1 else ''} "
                 "will run when your notebook is graded.") if self.n_hidden else ""
        if not self.results:
            return f"{self.exercise}: no cases were run"
        if not failed:
            return f"{self.exercise}: all {len(self.results)} cases passed. Well done!{later}"
        first = failed[0]
        return (
            f"{self.exercise}: {len(failed)} of {len(self.results)} cases failed.\n"
            f"First failure, case '{first.case}':\n{first.message}{later}"
        )

    def __str__(self) -> str:
        return self.message

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how IPython shows it
        printer.text(self.message)


def count_hidden(exercise: Exercise) -> int:
    """How many hidden cases the grader runs for ``exercise`` (drawn with a throwaway seed)."""
    try:
        return len(exercise.hidden_cases(np.random.default_rng(PRACTICE_SEED)))
    except Exception:
        return 0


def run_cases(exercise: Exercise, fn: Callable[..., Any], cases: Sequence[tuple[Case, bool]]) -> list[CaseResult]:
    """Run reference and ``fn`` in this process on each (case, hidden) and judge them."""
    results = []
    for case, hidden in cases:
        expected = Outcome("raised") if case.raises is not None else call(exercise.reference, case)
        results.append(judge(exercise, case, expected, call(fn, case), hidden=hidden))
    return results


def check(exercise_id: str, fn: Callable[..., Any], include_hidden: bool = False) -> CheckResult:
    """Run ``fn`` on the exercise's visible cases and compare with the reference.

    Returns a ``CheckResult``; in a notebook it displays as a short report:
    either "all N cases passed" or the first failing case with the expected
    and received values and a hint, and how many hidden cases run at
    grading. It never raises because of the student's code; an unknown id or
    a non-callable raises a ValueError/TypeError.

    ``include_hidden=True`` also runs *practice* hidden cases, drawn with a
    public seed: more tests of the same kind, never the cases the grader
    draws from the instructor's secret.
    """
    try:
        exercise = get(exercise_id)
    except ValueError as err:
        raise ValueError(f"check: {err}") from None
    if not callable(fn):
        raise TypeError(f"check: expected a function for {exercise_id!r}, got {type(fn).__name__}")
    cases = [(c, False) for c in exercise.visible_cases()]
    if include_hidden:
        cases += [(c, True) for c in exercise.hidden_cases(np.random.default_rng(PRACTICE_SEED))]
        return CheckResult(exercise_id, run_cases(exercise, fn, cases))
    return CheckResult(exercise_id, run_cases(exercise, fn, cases), n_hidden=count_hidden(exercise))
