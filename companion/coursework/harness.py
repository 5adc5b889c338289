"""The part of grading that runs inside the student's kernel, after the notebook.

It only *runs* the student's function: it builds each case's inputs with the
chapter's own case builders (inputs may be functions or models, which cannot
travel as data), calls the function, and writes what happened as plain data
(:mod:`companion.coursework.wire`). It decides nothing: the grader, in its own
process, builds the same cases from the instructor's copy, computes the
reference's results, checks that the inputs match, and compares. Whatever a
notebook patches here (numpy, json, this module) can at most spoil its own
outcome files, which then fail.

Before each call the registered references (and the public functions some
exercises use as references) are disabled in this process, so a submission
that calls or aliases the reference (``layer_grad_norms = gradient_norms``)
raises instead of passing.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

from companion.exercises import _core
from companion.coursework.wire import write_outcome

_PREPARED: dict[str, list] = {}


def fingerprint(value: Any, depth: int = 0) -> str:
    """A short hash of a case's inputs: arrays, tensors and models by their numbers, functions by their name."""
    h = hashlib.sha256()

    def feed(x: Any, d: int) -> None:
        if d > 20:
            h.update(b"deep")
            return
        if hasattr(x, "detach") and hasattr(x, "numpy"):
            x = x.detach().cpu().float().numpy() if str(x.dtype) == "torch.bfloat16" else x.detach().cpu().numpy()
        if isinstance(x, np.ndarray):
            h.update(f"a{x.dtype}{x.shape}".encode())
            h.update(np.ascontiguousarray(x).tobytes() if x.dtype != object else repr(x).encode())
        elif isinstance(x, (list, tuple)):
            h.update(f"{type(x).__name__}{len(x)}".encode())
            for v in x:
                feed(v, d + 1)
        elif isinstance(x, dict):
            h.update(b"dict")
            for k in sorted(x, key=repr):
                h.update(repr(k).encode())
                feed(x[k], d + 1)
        elif hasattr(x, "state_dict") and callable(x.state_dict):  # a torch module
            h.update(type(x).__name__.encode())
            feed(dict(x.state_dict()), d + 1)
        elif callable(x):
            h.update(f"fn:{getattr(x, '__qualname__', type(x).__name__)}".encode())
        elif isinstance(x, (bool, int, float, complex, str, bytes, type(None))) or isinstance(x, np.generic):
            h.update(repr(x).encode())
        else:
            h.update(type(x).__name__.encode())

    feed(value, depth)
    return h.hexdigest()[:16]


def case_fingerprint(case: _core.Case) -> str:
    return fingerprint((case.args, dict(case.kwargs)))


def prepare(exercise_id: str, function_name: str, seed: int, out: str, namespace: dict,
            checkers: tuple[str, ...] = ()) -> None:
    """Build the exercise's grading cases and write their names and input fingerprints to ``out/cases.json``."""
    for path in checkers:
        _core.load_checkers(path)
    exercise = _core.get(exercise_id)
    cases = exercise.grading_cases(np.random.default_rng(seed))
    _PREPARED[exercise_id] = [namespace.get(function_name), cases]
    os.makedirs(out, exist_ok=True)
    fn = namespace.get(function_name)
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({"defined": fn is not None, "callable": callable(fn), "type": type(fn).__name__,
                   "cases": [[c.name, case_fingerprint(c)] for c, _ in cases]}, f)


def _disable_references() -> None:
    def disabled(*args: Any, **kwargs: Any) -> Any:  # runs with the reference's globals: builtins only
        raise RuntimeError("this function is the exercise's reference solution: it cannot be called "
                           "(or aliased) while your own function is graded")

    for exercise in list(_core.EXERCISES.values()):
        ref = exercise.reference
        code = getattr(ref, "__code__", None)
        if code is not None and not code.co_freevars:
            try:
                ref.__code__ = disabled.__code__
            except (AttributeError, TypeError, ValueError):
                pass


def run(exercise_id: str, index: int, out: str) -> None:
    """Call the student's function on case ``index`` and write the outcome to ``out/case-<index>/``."""
    fn, cases = _PREPARED[exercise_id]
    case, _ = cases[index]
    folder = os.path.join(out, f"case-{index}")
    _disable_references()
    if not callable(fn):
        return  # the grader already knows from cases.json
    outcome = _core.call(fn, case)
    fields = {"kind": outcome.kind, "error_types": list(outcome.error_types), "message": outcome.message,
              "line": outcome.line, "where": outcome.where}
    write_outcome(folder, fields, outcome.value)
