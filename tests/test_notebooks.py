"""Every chapter as a reader opens it: exported, installed into a fresh environment, run top to bottom.

For each chapter in _toc.yml this makes the reader's notebook (what Colab, the
page's download button and Binder-less readers get) and the student's notebook
(``companion.coursework.student_notebook``: the reader notebook with
``student=True``, solutions replaced by coursework's skeletons), from the
chapter's one execution in this test session (``chapter_run``, conftest.py).
Then, in a virtual environment created for the session with nothing but pip
and an IPython kernel (what any Jupyter has), each notebook's own first cell
installs the companion package, from a wheel built from this checkout instead
of the remote address, and every notebook runs top to bottom in a fresh
kernel, in an empty folder away from the repository. Checked:

* every cell runs without error (a student's untouched skeleton raises
  NotImplementedError only inside ``check``, which reports it);
* no MyST is left in the Markdown: no ``{role}`` and no directive fence;
* no hidden assertion of the chapter is in the notebook, no ``myst_nb``;
* every number the book shows with ``{glue:text}`` is in the notebook's text;
* the student notebook holds no solution;
* the first cell installs a pinned version of the package.

The fresh environment uses your pip configuration and cache (index, wheels
already downloaded), so it costs an install of the packages, not a download.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import venv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from companion import export
from companion.toc import chapters

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = chapters(ROOT)
FORMS = ("reader", "student")
PINNED = re.compile(r'%pip install --quiet "beyond-backprop @ git\+https://github\.com/[\w.\-]+/[\w.\-]+@[0-9a-f]{40}"')
ROLE = re.compile(r"\{[A-Za-z][\w:\-]*\}`")
DIRECTIVE = re.compile(r"^\s*(`{3,}|:{3,})\{", re.M)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The companion package built from this checkout, as the wheel the first cell installs."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
                   check=True)
    (found,) = out.glob("beyond_backprop-*.whl")
    return found


@pytest.fixture(scope="session")
def fresh_python(tmp_path_factory) -> str:
    """A new virtual environment with pip and ipykernel only: the notebook's first cell installs the rest."""
    where = tmp_path_factory.mktemp("fresh") / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    python = str(where / ("Scripts" if os.name == "nt" else "bin") / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "ipykernel"], check=True)
    return python


def _made(chapter: Path, run: dict, form: str):
    if not export.succeeded(run):
        pytest.fail(f"{chapter.name} did not execute cleanly in this session (see its Cell tests):\n"
                    f"{export.first_error(run)[:2000]}")
    executed = nbformat.reads(run["notebook"], as_version=4)
    if form == "student":  # what `python -m companion.coursework student` writes, from this execution
        from companion.coursework.student import student_notebook

        return student_notebook(chapter, executed)
    return export.reader_notebook(chapter, executed)


@pytest.fixture(scope="session")
def notebooks(chapter_run, request) -> dict:
    """{(chapter, form): the exported notebook}, made from this session's executions (of the selected chapters)."""
    selected = {item.callspec.params["chapter"] for item in request.session.items
                if item.path.name == "test_notebooks.py" and hasattr(item, "callspec")}
    wanted = [c for c in CHAPTERS if c in selected]
    chapter_run.prefetch(wanted)
    made = {}
    for chapter in wanted:
        run = chapter_run(chapter)
        for form in FORMS:
            try:
                made[chapter, form] = _made(chapter, run, form)
            except BaseException as err:  # reported by that notebook's tests
                made[chapter, form] = err
    return made


@pytest.fixture(scope="session")
def runs(notebooks, wheel, fresh_python, tmp_path_factory, request) -> dict:
    """{(chapter, form): the notebook's execution in the fresh environment}, several at a time."""
    work = tmp_path_factory.mktemp("readers")
    local = f"beyond-backprop @ {wheel.as_uri()}"
    jobs = max(1, request.config.getoption("chapter_jobs"))
    todo = {}
    for (chapter, form), nb in notebooks.items():
        if isinstance(nb, BaseException):
            continue
        nb = nbformat.from_dict(nb)
        first = nb.cells[0]
        first.source = re.sub(r'"beyond-backprop @ [^"]+"', f'"{local}"', first.source)
        folder = work / f"{chapter.stem}-{form}"
        folder.mkdir()
        path = folder / f"{chapter.stem}.ipynb"
        nbformat.write(nb, path)
        todo[chapter, form] = path
    # the first notebook's own first cell installs the package alone, so that no two kernels write the
    # environment at once; the others' first cells then find it installed
    results = {}
    keys = list(todo)
    if keys:
        results[keys[0]] = export.execute_in_subprocess(todo[keys[0]], python=fresh_python, cwd=todo[keys[0]].parent)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {k: pool.submit(export.execute_in_subprocess, todo[k], python=fresh_python, cwd=todo[k].parent)
                   for k in keys[1:]}
        results.update({k: f.result() for k, f in futures.items()})
    # conftest.py prints these with the chapters' times
    request.config.reader_notebook_times = {f"{c.stem} ({form})": (r["wall"], r["cpu"]) for (c, form), r in results.items()}
    return results


def _markdown(nb) -> str:
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def _code(nb) -> str:
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "code")


def _hidden_assertions(chapter: Path) -> list[str]:
    found = []
    for cell in export.read_chapter(chapter).cells:
        if cell.cell_type == "code" and "remove-cell" in cell.metadata.get("tags", []):
            tree = export._parse(cell.source)
            found += [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Assert)] if tree else []
    return found


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_notebook_is_plain_and_shows_the_books_numbers(chapter, form, notebooks, chapter_run):
    nb = notebooks[chapter, form]
    if isinstance(nb, BaseException):
        raise nb
    markdown, code = _markdown(nb), _code(nb)
    assert not ROLE.findall(markdown), f"unresolved roles: {sorted(set(ROLE.findall(markdown)))}"
    assert not DIRECTIVE.search(markdown), f"a MyST directive is left: {DIRECTIVE.search(markdown).group(0)!r}"
    assert "myst_nb" not in code
    ast_code = {ast.unparse(n) for c in nb.cells if c.cell_type == "code" and (t := export._parse(c.source))
                for n in ast.walk(t) if isinstance(n, ast.Assert)}
    leaked = [a for a in _hidden_assertions(chapter) if a in ast_code]
    assert not leaked, f"hidden assertions in the notebook: {leaked[:3]}"
    # every number the book shows, as the book shows it
    executed = nbformat.reads(chapter_run(chapter)["notebook"], as_version=4)
    shown = export.glued_texts(chapter.read_text(), export.glue_values(executed))
    missing = {role: text for role, text in shown.items() if text not in markdown}
    assert not missing, f"numbers the book shows that the notebook lacks: {missing}"
    assert PINNED.fullmatch(nb.cells[0].source.splitlines()[-1]), nb.cells[0].source
    assert export.INSTALL_TAG in nb.cells[0].metadata["tags"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_student_notebook_has_no_solution(chapter, notebooks):
    reader, student = notebooks[chapter, "reader"], notebooks[chapter, "student"]
    for nb in (reader, student):
        if isinstance(nb, BaseException):
            raise nb
    solutions = [c.source for c in reader.cells if export.SOLUTION_TAG in c.metadata.get("tags", [])]
    assert "<summary>Solution" in _markdown(reader) or solutions, "the reader's notebook shows no solution"
    assert "Solution" not in _markdown(student) and "<details>" not in _markdown(student)
    # no reference solution's code: every function a solution defines has another body for students
    reference = {fn.name: ast.dump(ast.Module(fn.body, [])) for source in solutions
                 for fn in ast.walk(export._parse(source)) if isinstance(fn, ast.FunctionDef)}
    for cell in student.cells:
        tree = export._parse(cell.source) if cell.cell_type == "code" else None
        for fn in ast.walk(tree) if tree else []:
            if isinstance(fn, ast.FunctionDef) and fn.name in reference:
                assert ast.dump(ast.Module(fn.body, [])) != reference[fn.name], f"the solution of {fn.name} is given"


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_in_a_fresh_environment(chapter, form, runs):
    if (chapter, form) not in runs:
        pytest.fail("the notebook could not be made (see test_notebook_is_plain_and_shows_the_books_numbers)")
    result = runs[chapter, form]
    assert not result["problem"], result["problem"]
    errors = [f"Cell {n}: {c['error']}" for n, c in enumerate(result["cells"]) if c["status"] == "error"]
    assert not errors, errors[0][-4000:]
    assert result["cells"] and all(c["status"] == "ok" for c in result["cells"])
