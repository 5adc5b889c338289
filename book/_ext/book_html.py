"""Adjustments to the HTML pages the theme writes.

1. Point each chapter's Colab launch button at its published .ipynb.
   Colab opens only .ipynb files, and the repository keeps chapters as MyST .md.
   ``scripts/export_notebooks.py`` writes one .ipynb per chapter (with a first
   cell that installs the companion package) and the publish workflow pushes
   them to the branch named by ``colab_notebooks_branch``. The theme builds the
   Colab URL from the .md on the main branch; this rewrites it to that .ipynb.
2. Drop scripts that are included twice: sphinx-thebe adds its configuration
   script once per read phase, and a second copy is a JavaScript error
   ("Identifier 'THEBE_JS_URL' has already been declared").
3. Give the theme a default colour mode, so a first visit does not log
   "invalid theme mode" as a console error.
4. The ``execution-environment`` directive (on book/execution.md): a table of
   what each chapter's cached execution ran on (date, commit, torch and numpy
   versions, Python, CPU), read from the execution cache.
5. A ``404.html`` for GitHub Pages: self-contained (no scripts, styles or
   fonts from anywhere), linking back to the book from the site's root path.
"""

from __future__ import annotations

import html
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from docutils import nodes
from docutils.parsers.rst import Directive


def _rewrite(node: Any, main_branch: str, notebooks_branch: str) -> None:
    if isinstance(node, list):
        for item in node:
            _rewrite(item, main_branch, notebooks_branch)
    elif isinstance(node, dict):
        if node.get("text") == "Colab" and isinstance(node.get("url"), str):
            url = node["url"].replace(f"/blob/{main_branch}/", f"/blob/{notebooks_branch}/", 1)
            if url.endswith(".md"):
                url = url[: -len(".md")] + ".ipynb"
            node["url"] = url
        for value in node.values():
            _rewrite(value, main_branch, notebooks_branch)


def rewrite_colab_button(app, pagename, templatename, context, doctree) -> None:
    main_branch = app.config.html_theme_options.get("repository_branch") or "master"
    _rewrite(context.get("header_buttons", []), main_branch, app.config.colab_notebooks_branch)


def drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # the copies differ only in filename None vs "", so compare by content
        key = (str(getattr(script, "filename", script) or ""), tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def default_mode(app, pagename, templatename, context, doctree) -> None:
    if not context.get("default_mode"):
        context["default_mode"] = "auto"


class ExecutionEnvironment(Directive):
    """A table: for each chapter, when and on what its cached execution ran."""

    def run(self):
        env = self.state.document.settings.env
        root = Path(env.srcdir)
        sys.path.insert(0, str(root))
        from companion import export
        from companion.toc import chapters

        header = ["Chapter", "Executed", "Seconds (wall)", "CPU seconds", "Commit", "torch", "numpy", "Python",
                  "Processor"]
        rows = []
        fallback = export.environment(root)
        for chapter in chapters(root):
            _, data = export.cached_chapter(chapter, root)
            data = data or {}
            recorded = data.get("environment") or {**fallback, "executed": "not recorded"}
            seconds, cpu = data.get("execution_seconds"), data.get("cpu_seconds")
            rows.append([chapter.stem, recorded["executed"], f"{seconds:.0f}" if seconds else "",
                         f"{cpu:.0f}" if cpu else "", recorded["commit"], recorded["torch"], recorded["numpy"], recorded["python"],
                         recorded["cpu"]])
        table = nodes.table(classes=["execution-environment"])
        group = nodes.tgroup(cols=len(header))
        table += group
        group.extend(nodes.colspec(colwidth=1) for _ in header)
        thead, tbody = nodes.thead(), nodes.tbody()
        group += thead
        group += tbody
        for target, values in ((thead, [header]), (tbody, rows)):
            for values_row in values:
                row = nodes.row()
                for value in values_row:
                    entry = nodes.entry()
                    entry += nodes.paragraph(text=str(value))
                    row += entry
                target += row
        platform_line = nodes.paragraph(text=f"Platform: {fallback['platform']}.")
        return [table, platform_line]


def always_reread_execution_page(app, env, added, changed, removed):
    """The environment table reads the cache, which changes without the page changing."""
    return [doc for doc in env.found_docs if doc.endswith("execution")]


NOT_FOUND = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Page not found - {title}</title>
<style>
  body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 40em;
         margin: 4em auto; padding: 0 1em; line-height: 1.5; color: #222; background: #fff; }}
  @media (prefers-color-scheme: dark) {{ body {{ color: #ddd; background: #121212; }} a {{ color: #8ab4f8; }} }}
  h1 {{ font-size: 1.6em; }}
</style>
</head>
<body>
<main>
<h1>Page not found</h1>
<p>There is no page at this address in <em>{title}</em>. It may have moved when
the chapters were renumbered.</p>
<ul>
  <li><a id="home" href="{root}index.html">The book's first page and table of contents</a></li>
  <li><a id="search" href="{root}search.html">Search the book</a></li>
  <li><a id="issues" href="{issues}">Report a broken link</a></li>
</ul>
</main>
</body>
</html>
"""


def write_not_found_page(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    base = app.config.html_baseurl or "/"
    root = urlparse(base).path or "/"
    root = root if root.endswith("/") else root + "/"
    repository = (app.config.html_theme_options.get("repository_url") or "").rstrip("/")
    issues = f"{repository}/issues" if repository else f"{root}index.html"
    page = NOT_FOUND.format(title=html.escape(app.config.html_title or app.config.project), root=root,
                            issues=html.escape(issues))
    (Path(app.outdir) / "404.html").write_text(page)


def setup(app):
    app.add_config_value("colab_notebooks_branch", "notebooks", "html")
    app.add_directive("execution-environment", ExecutionEnvironment)
    app.connect("env-get-outdated", always_reread_execution_page)
    app.connect("build-finished", write_not_found_page)
    # priority 900: after the theme has added its launch buttons and scripts
    app.connect("html-page-context", rewrite_colab_button, priority=900)
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    app.connect("html-page-context", default_mode, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
