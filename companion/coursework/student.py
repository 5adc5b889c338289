"""Student notebooks: each chapter with its reference solutions replaced by skeletons.

``write_student_notebooks`` writes, for every chapter in ``_toc.yml``, a
notebook in which each gated reference solution (``solution-start`` ...
``solution-end``) is replaced by its skeleton (signature, docstring, ``raise
NotImplementedError``), the ``solution`` blocks and the hidden ``remove-cell``
checks are removed, and everything else is kept. The metadata records the
chapter and which function each code exercise checks, for information only:
the grader takes both from the instructor's copy of the chapter.

Reader notebooks: when the course gains its exporter of executed chapters
(plain notebooks with glued values written in), :func:`source_notebook` is the
one place to switch to it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
from nbformat.corpus.words import generate_corpus_id as random_cell_id

from companion.toc import chapters

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


def source_notebook(chapter: Path):
    """The chapter as an nbformat notebook, tags and solution gates intact (jupytext)."""
    import jupytext

    return jupytext.read(chapter)


def student_notebook(chapter: Path):
    """The student version of a chapter (an nbformat v4 notebook)."""
    nb = source_notebook(chapter)
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


EXERCISE_DIRECTIVE = re.compile(_FENCE + r"\{exercise\}[ \t]*(?P<title>[^\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$",
                                re.S | re.M)
LABEL = re.compile(r"^:label:[ \t]*(?P<label>\S+)", re.M)
GATE_LABEL = re.compile(r"\{solution-start\}[ \t]*(?P<label>\S+)")


def exercise_table(chapter: Path) -> dict:
    """A chapter's exercises for the instructors' page: which are auto-checked, which are written, reading time."""
    import jupytext

    nb = jupytext.read(chapter)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    gated = set(GATE_LABEL.findall(text))
    written, code = [], []
    for m in EXERCISE_DIRECTIVE.finditer(text):
        label = LABEL.search(m["body"])
        (code if label and label["label"] in gated else written).append(m["title"].strip())
    words = len(re.findall(r"[A-Za-z0-9']+", text))
    lines = sum(len(c.source.splitlines()) for c in nb.cells if c.cell_type == "code" and not _has(c, "remove-cell"))
    return {"chapter": chapter.stem, "reading_minutes": round(words / 200 + lines / 20), "code": code,
            "checked": list(exercises_checked(nb)), "written": written}
