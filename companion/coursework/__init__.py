"""Coursework: student notebooks and a grader an instructor can trust, one command each.

    python -m companion.coursework student --out student/
    python -m companion.coursework grade submissions/ --out grades/ --secret ~/course-secret --jobs 2

``student`` writes one notebook per chapter with every reference solution
replaced by its skeleton (:mod:`companion.coursework.student`). ``grade`` runs
each submission alone in a sandboxed kernel (:mod:`~companion.coursework.sandbox`),
which only runs the student's functions on the cases and hands back plain data
(:mod:`~companion.coursework.harness`, :mod:`~companion.coursework.wire`); the
verdicts, the hidden cases (drawn from the instructor's secret) and the
reference results are all computed in the grader's own process
(:mod:`~companion.coursework.grader`), which writes one result file per
submission as it finishes, then the gradebook, a feedback file per student and
a histogram (:mod:`~companion.coursework.report`).
"""

from __future__ import annotations

from typing import Any

_STUDENT = ("METADATA_KEY", "GATE_END", "GATE_START", "SOLUTION_BLOCK", "CHECK_CALL", "exercises_checked",
            "skeleton", "source_notebook", "student_notebook", "write_student_notebooks")
_GRADER = ("Settings", "Entry", "discover", "grade_class", "hidden_seed", "load_results", "read_secret")

__all__ = [*_STUDENT, *_GRADER, "Limits", "write_reports"]


def __getattr__(name: str) -> Any:  # import lazily: the sandbox launcher imports this package as root
    import importlib

    if name in _STUDENT:
        return getattr(importlib.import_module("companion.coursework.student"), name)
    if name in _GRADER:
        return getattr(importlib.import_module("companion.coursework.grader"), name)
    if name == "Limits":
        return importlib.import_module("companion.coursework.sandbox").Limits
    if name == "write_reports":
        return importlib.import_module("companion.coursework.report").write_reports
    raise AttributeError(name)
