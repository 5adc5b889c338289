"""Write every chapter as a reader's notebook (.ipynb): for Colab, for download, for students.

    python scripts/export_notebooks.py --out notebooks/                 # readers (Colab, download)
    python scripts/export_notebooks.py --out student/ --student         # students: no solutions (as coursework's)
    python scripts/export_notebooks.py --out notebooks/ --ref v1.0      # install that tag in the first cell

Each notebook is the chapter made plain by ``companion.export.reader_notebook``:
the numbers the book shows written into the text (from the chapter's cached
execution; a chapter not in the cache is executed first), MyST turned into
Markdown, the hidden assertion cells removed, and a first cell that installs
the companion package, with its run-time dependencies only, at the commit
``--ref`` (default: this checkout's HEAD). The publish workflow
(.github/workflows/book.yml) runs this with ``--ref`` set to the commit it
built and pushes the result to the `notebooks` branch, where the book's Colab
buttons point.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from companion import export  # noqa: E402
from companion.toc import chapters  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "notebooks", help="folder to write into")
    parser.add_argument("--ref", help="commit or tag the first cell installs (default: HEAD of this checkout)")
    parser.add_argument("--student", action="store_true",
                        help="student notebooks: solutions removed, code solutions replaced by skeletons")
    parser.add_argument("chapters", nargs="*", type=Path, help="only these chapters (default: all in _toc.yml)")
    args = parser.parse_args()
    book = export.Book.load(ROOT)
    ref = args.ref or export.git_commit(ROOT)
    if not ref:
        parser.error("not a git checkout: give the commit or tag to install with --ref")
    paths = [p.resolve() for p in args.chapters] or chapters(ROOT)
    requirement = export.install_source(ref, book)
    if args.student:  # the coursework's student notebook (one code path), from each chapter's execution
        import nbformat

        from companion.coursework import student_notebook

        written = []
        for chapter in paths:
            nb = student_notebook(chapter, export.executed_chapter(chapter, ROOT), book=book, requirement=requirement)
            path = args.out / chapter.relative_to(ROOT).with_suffix(".ipynb")
            path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, path)
            written.append(path)
    else:
        written = export.write_reader_notebooks(args.out, paths, book=book, requirement=requirement)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
