"""Coursework: student notebooks and an autograder, one command each.

    python -m companion.coursework student --out student/
    python -m companion.coursework grade submissions/*.ipynb --out grades/

``student`` writes, for every chapter in ``_toc.yml``, a notebook in which each
gated reference solution (``solution-start`` ... ``solution-end``) is replaced
by its skeleton (signature, docstring, ``raise NotImplementedError``), the
``solution`` blocks and the hidden ``remove-cell`` checks are removed, and
everything else is kept. The notebook's metadata records the chapter and which
function each code exercise checks.

``grade`` executes each submission in a fresh kernel (nbclient) with a
per-cell and a per-notebook time limit, keeps going past cells that raise,
then runs every exercise's checker, hidden cases included, from a fresh copy of
``companion.exercises`` loaded inside the kernel, so a notebook that redefines
``check`` or patches the checker module does not change its grade. It writes
``grades.csv`` (student, chapter, exercise, passed, message) and
``summary.csv`` (one row per submission). A broken submission becomes rows
saying what is wrong; it never stops the run.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import re
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.corpus.words import generate_corpus_id as random_cell_id

from companion.toc import ROOT, chapters
METADATA_KEY = "beyond_backprop"
_FENCE = r"(?P<fence>`{3,}|:{3,})"
SOLUTION_BLOCK = re.compile(_FENCE + r"\{solution\}.*?^(?P=fence)[ \t]*$\n?", re.S | re.M)
GATE_START = re.compile(_FENCE + r"\{solution-start\}.*?^(?P=fence)[ \t]*$\n?", re.S | re.M)
GATE_END = re.compile(_FENCE + r"\{solution-end\}.*?^(?P=fence)[ \t]*$\n?", re.S | re.M)
CHECK_CALL = re.compile(r"""check\(\s*["'](?P<id>[\w\-]+)["']\s*,\s*(?P<fn>[A-Za-z_]\w*)""")


# -- student notebooks -----------------------------------------------------
def skeleton(source: str) -> str:
    """Replace every function body in ``source`` by its docstring and ``raise NotImplementedError``.

    Imports are kept; any other top-level statement is part of the solution
    and dropped. Classes keep their methods, each reduced the same way.
    """
    tree = ast.parse(source)

    def stub(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.stmt:
        body: list[ast.stmt] = []
        doc = ast.get_docstring(fn, clean=False)
        if doc is not None:
            body.append(ast.Expr(ast.Constant(doc)))
        body.append(ast.Raise(ast.Call(ast.Name("NotImplementedError", ast.Load()), [ast.Constant("your code here")], [])))
        fn.body = body
        return fn

    kept: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            kept.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            kept.append(stub(node))
        elif isinstance(node, ast.ClassDef):
            node.body = [stub(n) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) else n for n in node.body]
            kept.append(node)
    if not kept:
        return "# your code here\n"
    return "\n\n\n".join(ast.unparse(node) for node in kept) + "\n"


def _has(cell, tag: str) -> bool:
    return tag in cell.get("metadata", {}).get("tags", [])


def exercises_checked(nb) -> dict[str, str]:
    """{exercise id: function name} from the visible ``check("id", fn)`` calls of a notebook."""
    found: dict[str, str] = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and not _has(cell, "remove-cell"):
            for m in CHECK_CALL.finditer(cell.source):
                found[m["id"]] = m["fn"]
    return found


def student_notebook(chapter: Path):
    """The student version of a chapter (an nbformat v4 notebook)."""
    import jupytext

    nb = jupytext.read(chapter)
    cells = []
    in_solution = False
    for cell in nb.cells:
        if cell.cell_type == "code":
            if _has(cell, "remove-cell"):
                continue  # hidden checks
            if in_solution:
                cell = nbformat.v4.new_code_cell(skeleton(cell.source))
            cells.append(cell)
            continue
        text = cell.source
        if GATE_START.search(text):
            text = GATE_START.sub("", text)
            in_solution = True
        if GATE_END.search(text):
            text = GATE_END.sub("", text)
            in_solution = False
        text = SOLUTION_BLOCK.sub("", text).strip()
        if text:
            cells.append(nbformat.v4.new_markdown_cell(text))
    if in_solution:
        raise ValueError(f"{chapter.name}: a solution-start has no matching solution-end")
    intro = nbformat.v4.new_markdown_cell(
        f"*Student version of `{chapter.name}`.* Write your code where a function raises "
        "`NotImplementedError`, then run the `check(...)` cell after it for feedback."
    )
    out = nbformat.v4.new_notebook(cells=[intro, *cells])
    out.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    out.metadata[METADATA_KEY] = {"chapter": chapter.stem, "exercises": exercises_checked(nb)}
    for cell in out.cells:
        cell["id"] = random_cell_id()
    return out


def write_student_notebooks(out_dir: Path, chapter_paths: list[Path] | None = None) -> list[Path]:
    """Write ``<out_dir>/<chapter>.ipynb`` for every chapter (default: all in _toc.yml)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for chapter in chapter_paths or chapters():
        path = out_dir / f"{chapter.stem}.ipynb"
        nbformat.write(student_notebook(chapter), path)
        written.append(path)
    return written


# -- grading -----------------------------------------------------------------
@dataclass
class Row:
    student: str
    chapter: str
    exercise: str
    passed: bool
    message: str


@dataclass
class Submission:
    path: Path
    student: str
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0


def student_name(path: Path, chapter_stems: set[str]) -> str:
    """``alice.ipynb`` -> alice; ``alice/01-chain-rule.ipynb`` -> alice."""
    return path.parent.name if path.stem in chapter_stems else path.stem


# Runs inside the student's kernel, after their notebook. It loads a fresh copy
# of companion.exercises under a private name, so a notebook that redefined
# `check` or patched the installed checker module grades the same as one that
# did not, and prints one tagged JSON line that the grader looks for.
_GRADE_CELL = """
def __bb_grade(exercise_id, function_name, tag, package_dir):
    import importlib.util as _util, json as _json, sys as _sys
    name = "__bb_exercises_" + tag
    spec = _util.spec_from_file_location(name, package_dir + "/__init__.py", submodule_search_locations=[package_dir])
    module = _util.module_from_spec(spec)
    _sys.modules[name] = module
    spec.loader.exec_module(module)
    fn = globals().get(function_name)
    if fn is None:
        result = {"passed": False, "message": f"`{function_name}` is not defined: was the exercise cell deleted or renamed, or did it fail to run?"}
    elif not callable(fn):
        result = {"passed": False, "message": f"`{function_name}` is a {type(fn).__name__}, not a function"}
    else:
        report = module.check(exercise_id, fn, include_hidden=True)
        result = {"passed": report.passed, "message": report.message}
    _sys.__stdout__.flush()
    _sys.stdout.write(tag + _json.dumps(result) + "\\n")
"""


def _cell_error(cell) -> str | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"{out.get('ename')}: {out.get('evalue')}"
    return None


def grade_notebook(path: Path, cell_timeout: float = 120, notebook_timeout: float = 600,
                   check_timeout: float = 60, chapter_stems: set[str] | None = None) -> Submission:
    """Execute one submission and grade its code exercises. Never raises for a bad submission."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    path = Path(path)
    chapter_stems = chapter_stems if chapter_stems is not None else {c.stem for c in chapters()}
    sub = Submission(path, student_name(path, chapter_stems))
    start = time.perf_counter()

    def add(chapter: str, exercise: str, passed: bool, message: str) -> None:
        sub.rows.append(Row(sub.student, chapter, exercise, passed, message))

    try:
        nb = nbformat.read(path, as_version=4)
        meta = nb.metadata[METADATA_KEY]
        chapter, exercises = meta["chapter"], dict(meta["exercises"])
    except Exception as err:  # not a notebook, not JSON, or not made by `student`
        add("?", "(notebook)", False, f"cannot read {path.name} as a course notebook: {type(err).__name__}: {err}")
        sub.seconds = time.perf_counter() - start
        return sub

    workdir = ROOT / "book"
    client = NotebookClient(
        nb, timeout=int(cell_timeout), kernel_name="python3", allow_errors=True,
        interrupt_on_timeout=True, resources={"metadata": {"path": str(workdir)}},
        error_on_timeout={"ename": "Timeout", "evalue": f"cell still running after {cell_timeout:g} s; interrupted"},
    )
    problems: list[str] = []
    try:
        with client.setup_kernel():
            # Import the checkers' dependencies first (not timed against the
            # student), so the fresh checker copy loads quickly afterwards.
            client.timeout = 300
            nb.cells.insert(0, nbformat.v4.new_code_cell("import companion.exercises"))
            client.execute_cell(nb.cells[0], 0, store_history=False)
            deadline = time.perf_counter() + notebook_timeout
            for position, cell in enumerate(nb.cells[1:], start=1):
                index = position - 1  # the cell's number in the submitted notebook
                if cell.cell_type != "code":
                    continue
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    problems.append(f"notebook time limit of {notebook_timeout:g} s reached; later cells not run")
                    break
                client.timeout = int(max(1, min(cell_timeout, remaining)))
                began = time.perf_counter()
                client.execute_cell(cell, position)
                if time.perf_counter() - began >= client.timeout:
                    problems.append(f"cell {index} timed out after {client.timeout} s and was interrupted")
                elif error := _cell_error(cell):
                    problems.append(f"cell {index} raised {error}")
            tag = "__bb_result_" + secrets.token_hex(8) + ":"
            package_dir = str(Path(__file__).resolve().parent / "exercises")
            for exercise_id, function_name in exercises.items():
                call = f"__bb_grade({exercise_id!r}, {function_name!r}, {tag!r}, {package_dir!r})"
                cell = nbformat.v4.new_code_cell(_GRADE_CELL + call)
                nb.cells.append(cell)
                client.timeout = int(check_timeout)
                began = time.perf_counter()
                client.execute_cell(cell, len(nb.cells) - 1)
                timed_out = time.perf_counter() - began >= check_timeout
                add(chapter, exercise_id, *_parse_result(cell, tag, check_timeout, timed_out))
    except DeadKernelError:
        problems.append("the kernel died (out of memory, or the notebook exited the interpreter)")
    except Exception as err:
        problems.append(f"grading stopped: {type(err).__name__}: {err}")
    graded = {r.exercise for r in sub.rows}
    for exercise_id in exercises:
        if exercise_id not in graded:
            add(chapter, exercise_id, False, "not graded: " + (problems[-1] if problems else "unknown reason"))
    add(chapter, "(notebook)", not problems, "; ".join(problems) if problems else "every cell ran")
    sub.seconds = time.perf_counter() - start
    return sub


def _parse_result(cell, tag: str, check_timeout: float, timed_out: bool) -> tuple[bool, str]:
    for out in cell.get("outputs", []):
        text = out.get("text", "") if out.get("output_type") == "stream" else ""
        for line in text.splitlines():
            if line.startswith(tag):
                result = json.loads(line[len(tag):])
                return bool(result["passed"]), str(result["message"])
    error = _cell_error(cell)
    if timed_out:
        return False, f"the checker's cases did not finish within {check_timeout:g} s (an infinite loop?)"
    return False, f"the checker could not run: {error or 'no result'}"


def grade(paths: list[Path], out_dir: Path, jobs: int = 1, **limits) -> list[Submission]:
    """Grade every submission; write grades.csv and summary.csv into ``out_dir``."""
    stems = {c.stem for c in chapters()}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        subs = list(pool.map(lambda p: grade_notebook(Path(p), chapter_stems=stems, **limits), paths))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "grades.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "chapter", "exercise", "passed", "message"])
        for sub in subs:
            for r in sub.rows:
                writer.writerow([r.student, r.chapter, r.exercise, r.passed, r.message])
    with open(out_dir / "summary.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "file", "chapter", "exercises_passed", "exercises", "score", "problems", "seconds"])
        for sub in subs:
            graded = [r for r in sub.rows if r.exercise != "(notebook)"]
            notebook = next((r for r in sub.rows if r.exercise == "(notebook)"), None)
            passed = sum(r.passed for r in graded)
            score = passed / len(graded) if graded else 0.0
            problems = "" if notebook is None or notebook.passed else notebook.message
            chapter = sub.rows[0].chapter if sub.rows else "?"
            writer.writerow([sub.student, sub.path.name, chapter, passed, len(graded), f"{score:.2f}", problems, f"{sub.seconds:.1f}"])
    return subs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion.coursework", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    student = commands.add_parser("student", help="write the student notebooks")
    student.add_argument("--out", type=Path, default=Path("student"), help="folder for the .ipynb files")
    grader = commands.add_parser("grade", help="grade submitted notebooks")
    grader.add_argument("submissions", nargs="+", type=Path, help=".ipynb files, or folders holding them")
    grader.add_argument("--out", type=Path, default=Path("grades"), help="folder for grades.csv and summary.csv")
    grader.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (one kernel each)")
    grader.add_argument("--cell-timeout", type=float, default=120, help="seconds per cell")
    grader.add_argument("--notebook-timeout", type=float, default=600, help="seconds per notebook")
    grader.add_argument("--check-timeout", type=float, default=60, help="seconds for one exercise's checker")
    args = parser.parse_args(argv)

    if args.command == "student":
        start = time.perf_counter()
        paths = write_student_notebooks(args.out)
        print(f"wrote {len(paths)} student notebooks to {args.out}/ in {time.perf_counter() - start:.1f} s")
        return 0
    paths: list[Path] = []
    for p in args.submissions:
        paths.extend(sorted(p.rglob("*.ipynb")) if p.is_dir() else [p])
    subs = grade(paths, args.out, jobs=args.jobs, cell_timeout=args.cell_timeout,
                 notebook_timeout=args.notebook_timeout, check_timeout=args.check_timeout)
    for sub in subs:
        graded = [r for r in sub.rows if r.exercise != "(notebook)"]
        print(f"{sub.student:>20}  {sum(r.passed for r in graded)}/{len(graded)} exercises  ({sub.seconds:.1f} s)")
    print(f"wrote {args.out / 'grades.csv'} and {args.out / 'summary.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
