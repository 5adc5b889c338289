"""Student notebooks and the autograder (companion.coursework)."""

import csv
import time

import jupytext
import nbformat
import pytest

from companion.coursework import (
    METADATA_KEY, GATE_END, GATE_START, exercises_checked, grade, skeleton, student_notebook,
    write_student_notebooks,
)
from companion.exercises import EXERCISES, all_exercises, check
from companion.toc import chapters

CHAPTERS = chapters()


def solution_cells(chapter):
    """The code cells between solution-start and solution-end, and the chapter's set-up cell."""
    nb = jupytext.read(chapter)
    setup = next(c for c in nb.cells if c.cell_type == "code")
    inside, cells = False, []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            inside = (inside or bool(GATE_START.search(cell.source))) and not GATE_END.search(cell.source)
        elif inside:
            cells.append(cell)
    return nb, setup, cells


def test_student_notebooks_are_fast_to_write(tmp_path):
    start = time.perf_counter()
    paths = write_student_notebooks(tmp_path)
    seconds = time.perf_counter() - start
    assert len(paths) == len(CHAPTERS) and seconds < 10, seconds


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_student_notebook_has_no_solutions_or_hidden_checks(chapter):
    nb, _, solutions = solution_cells(chapter)
    student = student_notebook(chapter)
    text = "\n".join(c.source for c in student.cells)
    assert solutions, f"{chapter.name} has no code exercise with a gated reference solution"
    assert "{solution" not in text and "remove-cell" not in text and "hidden=True" not in text
    hidden_sources = [c.source for c in nb.cells if "remove-cell" in c.metadata.get("tags", [])]
    assert not any(src.strip() and src in text for src in hidden_sources)
    # every line of a reference solution's body is gone, unless the chapter's
    # visible teaching code already shows that line outside the solution
    visible = {line.strip() for c in nb.cells if c.cell_type == "code" and c not in solutions
               and "remove-cell" not in c.metadata.get("tags", []) for line in c.source.splitlines()}
    student_lines = {line.strip() for line in text.splitlines()}
    for cell in solutions:
        kept = {line.strip() for line in skeleton(cell.source).splitlines()}  # signature and docstring
        for line in cell.source.splitlines():
            stripped = line.strip()
            if len(stripped) > 12 and stripped not in visible | kept:
                assert stripped not in student_lines, f"{chapter.name}: solution line leaked: {stripped}"
    assert "NotImplementedError" in text
    assert student.metadata[METADATA_KEY]["exercises"] == exercises_checked(nb)
    nbformat.validate(student)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_reference_solutions_pass_and_skeletons_score_zero(chapter):
    """Run the set-up cell and each reference solution (or its skeleton), then every checker, hidden cases too."""
    nb, setup, solutions = solution_cells(chapter)
    exercises = exercises_checked(nb)
    assert exercises and all(e in all_exercises() for e in exercises)
    reference, student = {}, {}
    exec(setup.source, reference)
    exec(setup.source, student)
    for cell in solutions:
        exec(cell.source, reference)
        exec(skeleton(cell.source), student)
    for exercise_id, name in exercises.items():
        result = check(exercise_id, reference[name], include_hidden=True)
        assert result.passed, result.message
        assert any(c.hidden for c in EXERCISES[exercise_id].cases()), f"{exercise_id} has no hidden case"
        untouched = check(exercise_id, student[name], include_hidden=True)
        assert not untouched.passed and "not implemented yet" in untouched.message


def _submission(path, *sources, metadata=True):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    if metadata:
        nb.metadata[METADATA_KEY] = {"chapter": "01-chain-rule", "exercises": {"ch01-derivative": "derivative"}}
    nbformat.write(nb, path)
    return path


GOOD = "def derivative(f, x, h=1e-5):\n    if not h > 0:\n        raise ValueError(h)\n    return (f(x + h) - f(x - h)) / (2 * h)\n"


def test_grader_reports_every_broken_submission_and_keeps_going(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    files = [
        _submission(subs / "good.ipynb", "import math", GOOD),
        _submission(subs / "skeleton.ipynb", skeleton(GOOD)),
        _submission(subs / "syntax.ipynb", "def derivative(f, x, h=1e-5)\n    return 0"),
        _submission(subs / "exception.ipynb", "raise RuntimeError('oops')", GOOD),
        _submission(subs / "slow_cell.ipynb", "while True:\n    pass", GOOD),
        _submission(subs / "slow_function.ipynb", "def derivative(f, x, h=1e-5):\n    while True:\n        pass"),
        _submission(subs / "deleted.ipynb", "x = 1"),
        _submission(subs / "tamper.ipynb", "def derivative(f, x, h=1e-5):\n    return 0",
                    "import companion.exercises as E\nE.check = lambda *a, **k: True\nE._core.check = E.check\n"
                    "E.EXERCISES.clear()\ndef check(*a, **k):\n    return 'all cases passed'"),
        _submission(subs / "no_metadata.ipynb", GOOD, metadata=False),
    ]
    (subs / "not_a_notebook.ipynb").write_text("this is not JSON")
    files.append(subs / "not_a_notebook.ipynb")
    results = grade(files, tmp_path / "grades", jobs=2, cell_timeout=4, check_timeout=4, notebook_timeout=60)
    by_student = {s.student: {r.exercise: r for r in s.rows} for s in results}
    assert len(by_student) == len(files)

    def exercise(student):
        return by_student[student]["ch01-derivative"]

    assert exercise("good").passed and by_student["good"]["(notebook)"].passed
    assert not exercise("skeleton").passed and "not implemented yet" in exercise("skeleton").message
    assert not exercise("syntax").passed and "SyntaxError" in by_student["syntax"]["(notebook)"].message
    assert exercise("exception").passed and "RuntimeError: oops" in by_student["exception"]["(notebook)"].message
    assert exercise("slow_cell").passed and "timed out" in by_student["slow_cell"]["(notebook)"].message
    assert not exercise("slow_function").passed and "did not finish" in exercise("slow_function").message
    assert not exercise("deleted").passed and "not defined" in exercise("deleted").message
    assert not exercise("tamper").passed and "expected 12" in exercise("tamper").message
    for broken in ("no_metadata", "not_a_notebook"):
        row = by_student[broken]["(notebook)"]
        assert not row.passed and "cannot read" in row.message

    with open(tmp_path / "grades" / "summary.csv") as f:
        summary = {row["student"]: row for row in csv.DictReader(f)}
    assert summary["good"]["score"] == "1.00" and summary["tamper"]["score"] == "0.00"
    with open(tmp_path / "grades" / "grades.csv") as f:
        assert {"student", "exercise", "passed", "message"} <= set(csv.DictReader(f).fieldnames)


def test_untouched_student_chapter_grades_zero_end_to_end(tmp_path):
    """The whole chapter-1 student notebook runs in the grader; its exercise scores zero, no grader error."""
    path = tmp_path / "alice" / "01-chain-rule.ipynb"
    path.parent.mkdir()
    nbformat.write(student_notebook(CHAPTERS[1 - 1]), path)
    (sub,) = grade([path], tmp_path / "grades", cell_timeout=120)
    rows = {r.exercise: r for r in sub.rows}
    assert sub.student == "alice"
    assert rows["(notebook)"].passed, rows["(notebook)"].message
    assert not rows["ch01-derivative"].passed and "not implemented yet" in rows["ch01-derivative"].message
