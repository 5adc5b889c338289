"""The table of contents, the chapters and the harness that executes them."""

import re
import textwrap
from pathlib import Path

import jupytext
import pytest

from companion.coursework.student import exercise_table
from companion.toc import chapters, is_notebook, toc_pages

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]


def test_toc_entries_exist_and_every_chapter_is_listed():
    listed = toc_pages()
    for path in listed:
        assert path.exists(), f"_toc.yml lists {path.relative_to(ROOT)}, which does not exist"
    notebooks = {p for p in (ROOT / "book").glob("*.md") if is_notebook(p)}
    missing = notebooks - set(listed)
    assert not missing, f"chapters not in _toc.yml (pytest would not run them): {sorted(p.name for p in missing)}"


@pytest.mark.parametrize("chapter", chapters(), ids=lambda p: p.name)
def test_chapter_shape(chapter):
    """Learning goals first; summary, exercises and references last; hidden checks; no stored outputs."""
    text = chapter.read_text()
    nb = jupytext.read(chapter)
    assert "Learning goals" in text
    for heading in ("## Summary", "## Exercises", "## References"):
        assert heading in text, f"{chapter.name} has no '{heading}' section"
    assert text.count("```{exercise}") >= 3, f"{chapter.name} needs at least three exercises"
    assert text.count("```{solution") >= text.count("```{exercise}"), "every exercise needs a solution"
    hidden = [c for c in nb.cells if c.cell_type == "code" and "remove-cell" in c.metadata.get("tags", [])]
    assert any("assert" in c.source for c in hidden), f"{chapter.name} has no hidden assertion cell"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert "{bibliography}" not in text, "cite into book/bibliography.md; a second bibliography duplicates keys"


def test_a_failing_cell_fails_the_run_and_names_chapter_and_cell(pytester):
    pytester.makefile(".yml", _toc="format: jb-book\nroot: book/broken\n")
    (pytester.path / "book").mkdir()
    (pytester.path / "book" / "broken.md").write_text(textwrap.dedent("""\
        ---
        jupytext:
          text_representation:
            extension: .md
            format_name: myst
        kernelspec:
          display_name: Python 3
          language: python
          name: python3
        ---

        # Broken

        ```{code-cell} ipython3
        x = 1
        ```

        ```{code-cell} ipython3
        assert x == 2, "the chapter's claim no longer holds"
        ```
        """))
    (pytester.path / "conftest.py").write_text((ROOT / "conftest.py").read_text())
    (pytester.path / "pyproject.toml").write_text("")  # keep the repository's addopts out
    result = pytester.runpytest_subprocess("book/broken.md", "-p", "no:cacheprovider", "--nbval-current-env")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*book/broken.md::Cell 1*", "*the chapter's claim no longer holds*"])


def test_the_intros_reading_times_are_the_counted_ones():
    table = dict(re.findall(r"^\| (\d+) \| [^|]+\| about (\d+) min \|$", (ROOT / "book" / "intro.md").read_text(), re.M))
    counted = {str(int(p.stem[:2])): str(exercise_table(p)["reading_minutes"]) for p in chapters()}
    assert table == counted
