"""Student notebooks: each chapter with its reference solutions replaced by skeletons.

A student notebook is the chapter's reader notebook (:func:`companion.export.reader_notebook`,
the one code path for every plain notebook of the course) with ``student=True``
and this module's :func:`skeleton`: each gated reference solution
(``solution-start`` ... ``solution-end``) becomes its skeleton (signature,
docstring, ``raise NotImplementedError``), the ``solution`` blocks and the
hidden ``remove-cell`` checks are removed, MyST becomes plain Markdown, and the
first cell installs the companion package. The numbers the text quotes come
from the chapter's execution in the book's cache (``_build/.jupyter_cache``,
filled by ``pytest`` or ``scripts/build_book.py``); a chapter the cache does not
hold is made from its unexecuted source, every quoted number shown as
``[`name`]`` (the student computes it by running the notebook), unless
``execute=True`` executes it first. The metadata records the chapter and which
function each code exercise checks, for information only: the grader takes
both from the instructor's copy of the chapter.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat

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


def student_notebook(chapter: Path, executed=None, *, book=None, requirement: str | None = None):
    """The student version of a chapter (an nbformat v4 notebook).

    Exactly ``companion.export.reader_notebook(chapter, executed, student=True,
    skeleton=skeleton)`` plus the checked exercises in the metadata, except that
    without ``executed`` and without a valid cached execution it does not execute
    the chapter: it is made from the unexecuted chapter (see the module's text).
    """
    from companion import export

    chapter = Path(chapter)
    source = export.read_chapter(chapter)
    nb = export.reader_notebook(chapter, executed, student=True, skeleton=skeleton, requirement=requirement,
                                book=book, execute=False, source=source)
    nb.metadata[METADATA_KEY]["exercises"] = exercises_checked(source)
    return nb


def write_student_notebooks(out_dir: Path, chapter_paths: list[Path] | None = None, *, execute: bool = False,
                            requirement: str | None = None, jobs: int = 2) -> list[Path]:
    """Write ``<out_dir>/<chapter>.ipynb`` for every chapter (default: all in _toc.yml).

    ``execute``: first execute (and cache) the chapters the book's cache does not
    hold, ``jobs`` at a time, so that every notebook shows the numbers; otherwise
    such a chapter's notebook is made from its unexecuted source.
    ``requirement``: what the first cell installs (default: this commit).
    """
    from companion import export

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [Path(p).resolve() for p in (chapter_paths or chapters())]
    book = export.Book.load()
    requirement = requirement or export.install_source(book=book)
    if execute:
        export.fresh_cache(book.root)
        missing = [c for c in paths if export.valid_cached_chapter(c, book.root) is None]
        for chapter, result in export.execute_chapters(missing, jobs=jobs, root=book.root).items():
            if not export.succeeded(result):
                raise RuntimeError(f"{chapter.name} failed to execute:\n{export.first_error(result)[:2000]}")
    written = []
    for chapter in paths:
        path = out_dir / f"{chapter.stem}.ipynb"
        nbformat.write(student_notebook(chapter, book=book, requirement=requirement), path)
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
