"""Student notebooks, the checker core and the grader's pieces that need no kernel (companion.coursework)."""

import json
import math
import os
import re
import time

import jupytext
import nbformat
import numpy as np
import pytest

from companion.coursework import (GATE_END, GATE_START, METADATA_KEY, discover, exercises_checked, hidden_seed,
                                  skeleton, student_notebook, write_student_notebooks)
from companion import export
from companion.coursework import wire
from companion.exercises import Case, allclose, all_exercises, check, diagnose, get, judge
from companion.exercises._core import Exercise, Outcome, call
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


def _without_ids(nb) -> dict:
    data = json.loads(json.dumps(nb))
    for cell in data["cells"]:
        cell.pop("id", None)
    return data


def _fake_execution(chapter):
    """The chapter with a glue output for every name its text shows (what an execution records; no kernel)."""
    nb = export.read_chapter(chapter)
    text = chapter.read_text()
    names = set()
    for content in re.findall(r"\{glue(?::\w+)?\}`([^`]+)`", text):
        names |= {content, content.rpartition(":")[0]}
    names |= set(re.findall(r"^[`:]{3,}\{glue(?::\w+)?\}\s*(\S+)", text, re.M))
    cell = next(c for c in nb.cells if c.cell_type == "code")
    cell.outputs = [nbformat.v4.new_output("display_data", data={export.GLUE_PREFIX + "text/plain": "0.5"},
                                           metadata={"scrapbook": {"name": n, "mime_prefix": export.GLUE_PREFIX}})
                    for n in sorted(names - {""})]
    return nb


def test_the_student_notebook_is_the_reader_notebook_for_students():
    """One code path: the student command's notebook is export.reader_notebook(..., student=True, skeleton=...)."""
    chapter = CHAPTERS[0]
    executed = _fake_execution(chapter)
    book = export.Book.load()
    ours = student_notebook(chapter, executed, book=book, requirement="beyond-backprop")
    theirs = export.reader_notebook(chapter, executed, student=True, skeleton=skeleton, book=book,
                                    requirement="beyond-backprop")
    assert ours.metadata[METADATA_KEY].pop("exercises") == exercises_checked(jupytext.read(chapter))
    assert _without_ids(ours) == _without_ids(theirs)
    assert ours.metadata[METADATA_KEY]["numbers"] and "0.5" in "\n".join(c.source for c in ours.cells)


def test_without_a_cached_execution_the_student_notebook_is_made_from_the_chapter(monkeypatch):
    def no_execution(*args, **kwargs):
        raise AssertionError("the chapter was executed")

    monkeypatch.setattr(export, "execute_chapter", no_execution)
    monkeypatch.setattr(export, "valid_cached_chapter", lambda *args, **kwargs: None)
    chapter = next(c for c in CHAPTERS if "{glue:text}" in c.read_text())
    nb = student_notebook(chapter)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "{glue" not in text and "[`" in text and not nb.metadata[METADATA_KEY]["numbers"]
    assert nb.cells[0].metadata["tags"] == [export.INSTALL_TAG]


def test_the_grader_never_runs_the_install_cell():
    from companion.coursework.grader import _code_cells

    nb = student_notebook(CHAPTERS[0], requirement="beyond-backprop")
    install = nb.cells[0]
    assert export.INSTALL_TAG in install.metadata["tags"] and "%pip install" in install.source
    install.source += "\nraise RuntimeError('the install cell ran')"
    cells = _code_cells(json.loads(json.dumps(nb)))
    assert cells and not any("install cell ran" in c or "%pip" in c for c in cells)
    assert len(cells) == sum(1 for c in nb.cells if c.cell_type == "code" and c.source.strip()) - 1
    # an untagged %pip line is still skipped, the rest of its cell runs
    nb.cells[0].metadata["tags"] = []
    first = _code_cells(json.loads(json.dumps(nb)))[0]
    assert "%pip" not in first and "install cell ran" in first


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
    """Run the set-up cell and each reference solution (or its skeleton), then every checker."""
    nb, setup, solutions = solution_cells(chapter)
    exercises = exercises_checked(nb)
    assert exercises and all(e in all_exercises() for e in exercises)
    # the solutions that define a checked function must run after the set-up cell
    # alone (that is how a student notebook runs them); written exercises' solutions
    # may build on the chapter's earlier cells.
    checked = [c for c in solutions
               if any(re.search(rf"^def {name}\b", c.source, re.M) for name in exercises.values())]
    reference, student = {}, {}
    exec(setup.source, reference)
    exec(setup.source, student)
    for cell in checked:
        exec(cell.source, reference)
        exec(skeleton(cell.source), student)
    for exercise_id, name in exercises.items():
        result = check(exercise_id, reference[name], include_hidden=True)
        assert result.passed, result.message
        assert get(exercise_id).hidden_cases(np.random.default_rng(1)), f"{exercise_id} has no hidden case"
        untouched = check(exercise_id, student[name])
        assert not untouched.passed and "not implemented yet" in untouched.message


# -- the checker core ---------------------------------------------------------------
def _ref(x):
    return 2.0 * np.asarray(x)


EXERCISE = Exercise("test-double", _ref, lambda: [Case("twice a vector", (np.arange(1.0, 4.0),))],
                    allclose(), "multiply by two",
                    hidden=lambda rng: [Case("a drawn vector", (rng.normal(size=5),)), Case("a drawn scalar", (1.5,))])


def test_check_runs_visible_cases_and_counts_the_hidden_ones(monkeypatch):
    from companion.exercises import _core

    monkeypatch.setitem(_core.EXERCISES, "test-double", EXERCISE)
    result = check("test-double", lambda x: 2 * np.asarray(x))
    assert result.passed and len(result.results) == 1
    assert "2 more hidden cases will run when your notebook is graded" in result.message
    practice = check("test-double", lambda x: 2 * np.asarray(x), include_hidden=True)
    assert len(practice.results) == 3


def test_a_hidden_failure_never_shows_the_expected_value():
    case = Case("a drawn vector", (np.array([0.123456, 7.654321]),))
    expected = call(EXERCISE.reference, case)
    wrong = Outcome("returned", np.array([0.5, 0.5]))
    message = judge(EXERCISE, case, expected, wrong, hidden=True).message
    assert "0.2469" not in message and "15.30" not in message and "0.1234" not in message
    assert "differs from the reference" in message and "multiply by two" in message
    visible = judge(EXERCISE, case, expected, wrong, hidden=False).message
    assert "0.2469" in visible


@pytest.mark.parametrize("received, words", [
    (lambda e: -e, "sign is flipped"),
    (lambda e: e / 4, "constant factor of 0.25"),
    (lambda e: e.T, "transposed"),
    (lambda e: e[::-1], "reverse order"),
    (lambda e: e.astype(np.float32), "dtype float32 instead of float64"),
    (lambda e: e.reshape(-1), "wrong shape"),
])
def test_diagnose_names_the_common_bugs(received, words):
    expected = np.arange(1.0, 7.0).reshape(3, 2) ** 1.5
    got = received(expected)
    if words.startswith("dtype"):
        got = got + 0.01
    assert words in diagnose(expected, got)


def test_diagnose_sees_swapped_outputs_and_a_missing_tensor():
    a, b = np.ones((2, 2)), np.zeros((2, 1))
    assert "reverse order" in diagnose((a, b), (b, a))
    torch = pytest.importorskip("torch")
    assert "torch tensor is expected" in diagnose(torch.ones(3), np.zeros(3))


def test_hidden_cases_are_only_drawn_never_fixed():
    with pytest.raises(TypeError):
        Case("a fixed hidden case", (9.0,), hidden=True)  # the old form is gone: nothing hidden ships
    cases = EXERCISE.grading_cases(np.random.default_rng(0))
    assert [hidden for _, hidden in cases] == [False, True, True]
    again = EXERCISE.grading_cases(np.random.default_rng(0))
    assert np.array_equal(cases[1][0].args[0], again[1][0].args[0])
    assert not np.array_equal(cases[1][0].args[0], EXERCISE.grading_cases(np.random.default_rng(1))[1][0].args[0])


def test_hidden_seeds_depend_on_the_secret_the_exercise_and_the_student():
    a = hidden_seed(b"secret one, long enough", "ch01-derivative")
    assert a == hidden_seed(b"secret one, long enough", "ch01-derivative")
    assert a != hidden_seed(b"secret two, long enough", "ch01-derivative")
    assert a != hidden_seed(b"secret one, long enough", "ch02-xor-backward")
    assert hidden_seed(b"secret one, long enough", "ch01-derivative", "alice") != \
        hidden_seed(b"secret one, long enough", "ch01-derivative", "bob")


# -- outcomes as plain data ---------------------------------------------------------
def _roundtrip(tmp_path, value):
    wire.write_outcome(str(tmp_path / "case"), {"kind": "returned"}, value)
    fd = wire.open_folder(str(tmp_path), "case")
    try:
        return wire.read_outcome(fd)["value"]
    finally:
        os.close(fd)


def test_outcomes_travel_as_plain_data(tmp_path):
    torch = pytest.importorskip("torch")
    value = (1, 2.5, float("nan"), True, None, "text", [np.arange(3)], {"w": torch.ones(2, dtype=torch.float64)},
             np.float32(1.5))
    got = _roundtrip(tmp_path, value)
    assert got[:2] == (1, 2.5) and math.isnan(got[2]) and got[3:6] == (True, None, "text")
    assert np.array_equal(got[6][0], np.arange(3))
    assert isinstance(got[7]["w"], torch.Tensor) and got[7]["w"].dtype == torch.float64
    assert got[8] == np.float32(1.5) and got[8].dtype == np.float32


def test_objects_do_not_survive_the_trip(tmp_path):
    class Sneaky(float):
        def __eq__(self, other):
            return True

    class Anything:
        def __eq__(self, other):
            return True

    got = _roundtrip(tmp_path, (Sneaky(3.0), Anything()))
    assert type(got[0]) is float and got[0] == 3.0
    assert isinstance(got[1], wire.Unsupported) and got[1] != 1


def test_the_reader_refuses_links_pickles_and_huge_files(tmp_path):
    folder = tmp_path / "case"
    wire.write_outcome(str(folder), {"kind": "returned"}, np.arange(3))
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read me")
    (folder / "arr-0.npy").unlink()
    (folder / "arr-0.npy").symlink_to(secret)
    fd = wire.open_folder(str(tmp_path), "case")
    with pytest.raises(wire.WireError, match="cannot open"):
        wire.read_outcome(fd)
    os.close(fd)
    (folder / "arr-0.npy").unlink()
    np.save(folder / "arr-0.npy", np.array([object()], dtype=object), allow_pickle=True)
    fd = wire.open_folder(str(tmp_path), "case")
    with pytest.raises(wire.WireError, match="not a plain .npy"):
        wire.read_outcome(fd)
    os.close(fd)
    (tmp_path / "linked").symlink_to(folder)
    with pytest.raises(wire.WireError):
        wire.open_folder(str(tmp_path), "linked")


# -- identity -----------------------------------------------------------------------
def test_identity_comes_from_the_path(tmp_path):
    files = ["section1/alice.ipynb", "section2/alice.ipynb", "bob/02-xor-backprop.ipynb", "02-xor-backprop.ipynb",
             "carol/notes.py", ".ipynb_checkpoints/x-checkpoint.ipynb", "dan/.ipynb_checkpoints/dan-checkpoint.ipynb",
             "dan/dan.ipynb", ".DS_Store"]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    entries = {e.file: e for e in discover([tmp_path], {"01-chain-rule", "02-xor-backprop"})}
    assert set(entries) == {"section1/alice.ipynb", "section2/alice.ipynb", "bob/02-xor-backprop.ipynb",
                            "02-xor-backprop.ipynb", "carol/notes.py", "dan/dan.ipynb"}
    assert entries["section1/alice.ipynb"].student == "section1/alice"
    assert entries["section2/alice.ipynb"].student == "section2/alice"
    assert entries["bob/02-xor-backprop.ipynb"].student == "bob"
    assert entries["bob/02-xor-backprop.ipynb"].chapter == "02-xor-backprop"
    assert entries["dan/dan.ipynb"].student == "dan/dan"
    assert "names no student" in entries["02-xor-backprop.ipynb"].problems[0]
    assert not entries["carol/notes.py"].notebook and "not a notebook (.py)" in entries["carol/notes.py"].problems[0]


def test_chapter_6s_solution_agrees_with_the_reference_on_every_drawn_case():
    """The content-lookup checker's hidden draws are well posed: no case depends on the epsilon a correct
    answer adds to the norms (width 1 and 2 used to draw near-zero slots, where it does)."""
    chapter = next(c for c in CHAPTERS if c.stem.startswith("06-"))
    _, setup, solutions = solution_cells(chapter)
    namespace = {}
    exec(setup.source, namespace)
    exec(next(c.source for c in solutions if "def content_lookup" in c.source), namespace)
    exercise = get("ch06-content-lookup")
    widths = set()
    for secret in range(40):
        for case in exercise.hidden_cases(np.random.default_rng(secret)):
            widths.add(case.args[0].shape[-1])
            result = judge(exercise, case, call(exercise.reference, case), call(namespace["content_lookup"], case))
            assert result.passed, (secret, case.name, result.message)
    assert {1, 2} <= widths
