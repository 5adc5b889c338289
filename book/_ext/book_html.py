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
"""

from __future__ import annotations

from typing import Any


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


def setup(app):
    app.add_config_value("colab_notebooks_branch", "notebooks", "html")
    # priority 900: after the theme has added its launch buttons and scripts
    app.connect("html-page-context", rewrite_colab_button, priority=900)
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    app.connect("html-page-context", default_mode, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
