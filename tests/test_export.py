"""companion.export on a small chapter that uses every MyST construct the export converts.

The end-to-end check (every real chapter exported, installed fresh and run) is
tests/test_notebooks.py; this file pins each conversion on its own, fast.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import nbformat
import pytest

from companion import book as companion_book
from companion import export

CHAPTER = textwrap.dedent('''\
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

    # A tiny chapter

    ```{admonition} Learning goals
    :class: tip

    - read {term}`the chain rule <Chain rule>`, and {term}`finite
      differences <Finite difference>` across a line break
    ```

    ```{code-cell} ipython3
    :tags: [hide-cell]

    from myst_nb import glue
    import math
    ```

    ```{code-cell} ipython3
    :tags: [remove-cell]

    seconds = 2.0
    helper = 7
    glue("acc", 0.9731, display=False)
    glue("name", "XOR", display=False)
    assert seconds < 60, "the chapter is slow"
    ```

    (sec-results)=
    ## Results

    Accuracy {glue:text}`acc:.1%` on {glue:text}`name`, as {cite:t}`rumelhart1986learning`
    found, and others too {cite}`rumelhart1986learning,minsky1969perceptrons`. See
    {ref}`tiny-ex-one` and {ref}`the results <sec-results>`; a `{cite}` in code stays.

    % a comment nobody reads

    ```{code-cell} ipython3
    print(helper + 1)
    ```

    ## Exercises

    ```{exercise} Do it
    :label: tiny-ex-one

    Write `double(x)`.
    ```

    ```{solution} tiny-ex-one
    :class: dropdown

    Multiply by two.
    ```

    ```{solution-start} tiny-ex-one
    :class: dropdown
    ```

    ```{code-cell} ipython3
    def double(x):
        """Twice x."""
        return 2 * x
    ```

    ```{solution-end}
    ```

    ```{code-cell} ipython3
    print(double(3))
    ```
    ''')


@pytest.fixture
def chapter(tmp_path) -> Path:
    path = tmp_path / "99-tiny.md"
    path.write_text(CHAPTER)
    return path


@pytest.fixture
def executed(chapter):
    """The chapter with the glue outputs an execution would record (no kernel needed)."""
    nb = export.read_chapter(chapter)
    hidden = next(c for c in nb.cells if c.cell_type == "code" and "remove-cell" in c.metadata.get("tags", []))
    hidden.outputs = [
        nbformat.v4.new_output("display_data", data={export.GLUE_PREFIX + "text/plain": repr(value)},
                               metadata={"scrapbook": {"name": name, "mime_prefix": export.GLUE_PREFIX}})
        for name, value in (("acc", 0.9731), ("name", "XOR"))
    ]
    return nb


@pytest.fixture
def book():
    return export.Book.load()


def _markdown(nb) -> str:
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def test_numbers_are_written_in_as_the_book_formats_them(chapter, executed, book):
    text = _markdown(export.reader_notebook(chapter, executed, book=book, requirement="beyond-backprop"))
    assert "Accuracy 97.3% on XOR" in text
    assert export.glued_texts(CHAPTER, export.glue_values(executed)) == {"acc:.1%": "97.3%", "name": "XOR"}
    assert "{glue" not in text


def test_citations_terms_refs_and_directives_become_plain_markdown(chapter, executed, book):
    text = _markdown(export.reader_notebook(chapter, executed, book=book, requirement="beyond-backprop"))
    assert "Rumelhart et al. [(1986)](#ref-rumelhart1986learning)" in text
    assert "([Rumelhart et al., 1986](#ref-rumelhart1986learning); [Minsky and Papert, 1969]" in text
    assert "## Works cited" in text and '<a id="ref-minsky1969perceptrons"></a>Minsky, M. and Papert, S. (1969)' in text
    assert f"[the chain rule]({book.url}book/glossary.html#term-Chain-rule)" in text
    assert f"[finite\n>   differences]({book.url}book/glossary.html#term-Finite-difference)" in text
    assert "[Exercise 1](#tiny-ex-one)" in text and "[the results](#sec-results)" in text
    assert '<a id="sec-results"></a>' in text and "nobody reads" not in text
    assert "> **Learning goals**" in text
    assert '<a id="tiny-ex-one"></a>\n### Exercise 1: Do it' in text
    assert "<details>\n<summary>Solution to Exercise 1</summary>\n\nMultiply by two." in text
    assert "a `{cite}` in code stays" in text  # code spans are not roles
    assert "```{" not in text


def test_hidden_cells_go_but_what_a_visible_cell_needs_stays(chapter, executed, book):
    nb = export.reader_notebook(chapter, executed, book=book, requirement="beyond-backprop")
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    joined = "\n".join(code)
    assert "assert" not in joined and "glue(" not in joined and "myst_nb" not in joined
    assert "helper = 7" in joined            # print(helper + 1) needs it
    assert "from companion.book import glue" in joined
    assert code[0].endswith('%pip install --quiet "beyond-backprop"')
    assert nb.cells[0].metadata["tags"] == [export.INSTALL_TAG]
    solution = next(c for c in nb.cells if export.SOLUTION_TAG in c.metadata.get("tags", []))
    assert "return 2 * x" in solution.source and solution.metadata["jupyter"]["source_hidden"]


def test_student_form_has_no_solution_and_the_skeleton_in_its_place(chapter, executed, book):
    nb = export.reader_notebook(chapter, executed, book=book, requirement="beyond-backprop", student=True,
                                skeleton=lambda source: "def double(x):\n    raise NotImplementedError\n")
    text, code = _markdown(nb), "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "Solution" not in text and "Multiply by two" not in text
    assert "return 2 * x" not in code and "raise NotImplementedError" in code
    assert "print(double(3))" in code
    dropped = export.reader_notebook(chapter, executed, book=book, requirement="x", student=True)
    assert "def double" not in "\n".join(c.source for c in dropped.cells)


def test_the_install_cell_pins_a_commit_of_the_repository(book):
    assert export.install_source("0123abc", book) == f"beyond-backprop @ git+{book.repository}@0123abc"


def test_unknown_myst_is_an_error_not_garbage(tmp_path, book):
    path = tmp_path / "98-odd.md"
    path.write_text(CHAPTER.replace("## Results", "## Results {unheardof}`x`"))
    with pytest.raises(export.ExportError, match="unheardof"):
        export.reader_notebook(path, export.read_chapter(path), book=book, requirement="x")
    path.write_text(CHAPTER.replace("{glue:text}`name`", "{glue:text}`nothing`"))
    with pytest.raises(export.ExportError, match="nothing was glued"):
        export.reader_notebook(path, export.read_chapter(path), book=book, requirement="x")


def test_progress_bar_widgets_become_static_html():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("for _ in tqdm(range(300)): pass")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        export.WIDGET_VIEW: {"model_id": "box", "version_major": 2, "version_minor": 0},
        "text/plain": "  0%|          | 0/300"})]
    nb.cells = [cell]
    nb.metadata["widgets"] = {export.WIDGET_STATE: {"state": {
        "box": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_a", "IPY_MODEL_b", "IPY_MODEL_c"]}},
        "a": {"model_name": "HTMLModel", "state": {"value": "100%"}},
        "b": {"model_name": "FloatProgressModel", "state": {"value": 300, "max": 300, "min": 0}},
        "c": {"model_name": "HTMLModel", "state": {"value": " 300/300 [00:01&lt;00:00, 250.0it/s]"}},
    }}}
    export.static_widgets(nb)
    data = nb.cells[0].outputs[0]["data"]
    assert export.WIDGET_VIEW not in data and "widgets" not in nb.metadata
    assert '<progress value="300" max="300"' in data["text/html"]
    assert data["text/plain"] == "100%|" + "\u2588" * 10 + "| 300/300 [00:01<00:00, 250.0it/s]"


def test_the_kernel_spec_folder_goes_when_the_kernel_manager_does():
    with export.kernel_manager() as km:
        spec_dir = Path(km.kernel_spec_manager.kernel_dirs[0])
        assert (spec_dir / "bb-python" / "kernel.json").exists()
    assert not spec_dir.exists()  # one folder per executed notebook used to stay in /tmp


def test_glue_without_myst_nb_shows_only_what_is_displayed(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_myst_nb(name, *args, **kwargs):
        if name == "myst_nb":
            raise ImportError("no myst_nb here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_myst_nb)
    assert companion_book.glue("x", 41, display=False) is None
    assert capsys.readouterr().out == ""
    companion_book.glue("x", 42)
    assert "42" in capsys.readouterr().out


def test_without_an_execution_the_numbers_are_placeholders_and_nothing_executes(chapter, book, monkeypatch):
    def no_execution(*args, **kwargs):
        raise AssertionError("the chapter was executed")

    monkeypatch.setattr(export, "execute_chapter", no_execution)
    monkeypatch.setattr(export, "valid_cached_chapter", lambda *args, **kwargs: None)  # as if the cache were empty
    nb = export.reader_notebook(chapter, book=book, requirement="x", execute=False)
    text = _markdown(nb)
    assert f"Accuracy {export.placeholder('acc')} on {export.placeholder('name')}" in text
    assert "{glue" not in text and "book's page gives its value" in text
    assert nb.metadata[export.METADATA_KEY]["numbers"] is False


def _tiny_book(tmp_path: Path) -> Path:
    """A one-chapter book (the chapter with a written and a gated code solution), no execution."""
    root = tmp_path / "tinybook"
    (root / "book").mkdir(parents=True)
    (root / "_config.yml").write_text("title: Tiny\nonly_build_toc_files: true\nexecute:\n  execute_notebooks: 'off'\n"
                                      "sphinx:\n  extra_extensions:\n    - sphinx_exercise\n")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n- file: book/99-tiny\n")
    (root / "book" / "intro.md").write_text("# Intro\n\nThe tiny book.\n")
    chapter = CHAPTER.split("# A tiny chapter")[0] + "# A tiny chapter\n" + CHAPTER.split("## Exercises")[1]
    chapter = chapter.replace("Multiply by two.", "Multiply by two, WRITTEN_SOLUTION_TEXT.")
    chapter = chapter.replace("return 2 * x", "return 2 * x  # GATED_SOLUTION_CODE")
    (root / "book" / "99-tiny.md").write_text(chapter)
    return root


def _build_book_script():
    """scripts/build_book.py as a module (it is also the Sphinx extension of the solution-free build)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_book", export.ROOT / "scripts" / "build_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_book_without_solutions_shows_none(tmp_path):
    """scripts/build_book.py --hide-solutions, on a one-chapter book: sphinx-exercise's hide_solutions, the
    script's own extension that drops the gated solution cells, and the solution-free downloads."""
    import subprocess
    import sys

    build_book = _build_book_script()
    root = _tiny_book(tmp_path)
    source = (root / "book" / "99-tiny.md").read_text()
    assert "WRITTEN_SOLUTION_TEXT" in source and "GATED_SOLUTION_CODE" in source
    out = root / "_build" / "no-solutions"
    config = build_book.no_solutions_config(root, out)
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    run = subprocess.run([str(jupyter_book), "build", str(root), "-W", "-n", "--config", str(config),
                          "--path-output", str(out)], cwd=root, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    html = out / "_build" / "html"
    assert build_book.write_solution_free_downloads(html, root) == 1
    page = (html / "book" / "99-tiny.html").read_text()
    assert "Write <code" in page and "print" in page and "double" in page  # the exercise and the cell after it
    for path in html.rglob("*"):
        if path.is_file() and path.suffix in (".html", ".js", ".md", ".ipynb", ".txt"):
            text = path.read_text(errors="replace")
            assert "WRITTEN_SOLUTION_TEXT" not in text and "GATED_SOLUTION_CODE" not in text, path


def test_every_chapters_source_loses_exactly_its_solutions():
    from companion.toc import chapters

    build_book = _build_book_script()
    for chapter in chapters():
        text = chapter.read_text()
        stripped = build_book.strip_solutions(text)
        gated = re.findall(r"\{solution-start\}.*?\{solution-end\}", text, re.S)
        assert gated and "{solution" not in stripped, chapter.name
        assert stripped.count("{exercise}") == text.count("{exercise}"), chapter.name
        assert stripped.count("{code-cell}") == text.count("{code-cell}") - sum(g.count("{code-cell}") for g in gated)
