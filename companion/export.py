"""A chapter as a plain notebook: what a reader opens in Colab, downloads, or gets as coursework.

The book's chapters are MyST-Markdown notebooks. Outside the book build they
would show raw ``{glue:text}`` placeholders, MyST directives and the hidden
assertion cells, and fail on ``from myst_nb import glue``. This module turns an
*executed* chapter into the notebook a reader expects:

* every ``{glue:text}`` value written into the Markdown, as the book shows it;
* citations as "(Author, year)" linking to a works-cited list at the end;
  glossary terms as links to the book's glossary page; cross-references as
  links;
* exercises as headed sections, solutions in ``<details>`` (or removed, for
  students), admonitions as quotes;
* the hidden ``remove-cell`` cells removed (their assertions and ``glue``
  calls; a statement a later visible cell needs is kept), and
  ``from myst_nb import glue`` replaced by :func:`companion.book.glue`;
* a first cell that installs the companion package at a pinned version.

Made without an execution (``reader_notebook(..., execute=False)`` when the
cache holds none, as the coursework's student notebooks are), the notebook is
the same except that each glued value is shown as its name (:func:`placeholder`).

It also executes chapters once for everything that needs their outputs:
:func:`execute_notebook` runs a notebook cell by cell in a fresh kernel and
reports each cell; :func:`store_executed` and :func:`cached_chapter` keep the
executed chapters in the book's jupyter-cache, where the book build, the tests
and the export all find them.

    python -m companion.export execute book/02-xor-backprop.md --out run.ipynb --report run.json

Needs the book's tools (nbformat, nbclient, jupyter-cache, pybtex), not just
the companion's run-time dependencies.
"""

from __future__ import annotations

import argparse
import ast
import base64
import contextlib
import copy
import datetime
import hashlib
import html
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from ast import literal_eval
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "beyond-backprop"
METADATA_KEY = "beyond_backprop"
INSTALL_TAG = "install-companion"
SOLUTION_TAG = "solution"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
GLUE_PREFIX = "application/papermill.record/"


class ExportError(ValueError):
    """A chapter uses MyST the export cannot turn into plain Markdown."""


# -- the book: configuration, bibliography, labels ----------------------------------
@dataclass
class Book:
    """What the export needs to know about the book: where it is published, its references and labels."""

    root: Path = ROOT
    url: str = ""                       # published HTML, ending in "/"
    repository: str = ""                # https://github.com/owner/name
    bib: dict[str, dict] = field(default_factory=dict)
    labels: dict[str, tuple[str, str]] = field(default_factory=dict)  # label -> (page stem, text)

    @classmethod
    def load(cls, root: Path = ROOT) -> Book:
        import yaml

        config = yaml.safe_load((root / "_config.yml").read_text())
        repository = config.get("repository", {}).get("url", "").rstrip("/")
        url = (config.get("html", {}).get("baseurl") or "").rstrip("/") + "/"
        if url == "/" and repository.startswith("https://github.com/"):
            owner, name = repository.removeprefix("https://github.com/").split("/")[:2]
            url = f"https://{owner}.github.io/{name}/"
        bibfiles = config.get("bibtex_bibfiles", [])
        return cls(root=root, url=url, repository=repository,
                   bib=_read_bib([root / b for b in bibfiles]), labels=_book_labels(root))


def _latex_to_text(value: str) -> str:
    try:
        from pybtex.richtext import Text

        return str(Text.from_latex(value))
    except Exception:  # pybtex absent or a construct it cannot read: drop the braces
        return re.sub(r"[{}]", "", value)


def _read_bib(paths: list[Path]) -> dict[str, dict]:
    from pybtex.database import parse_string

    entries: dict[str, dict] = {}
    for path in paths:
        if not path.exists():
            continue
        data = parse_string(path.read_text(), "bibtex")
        for key, entry in data.entries.items():
            people = entry.persons.get("author") or entry.persons.get("editor") or []
            last = [_latex_to_text(" ".join(p.prelast_names + p.last_names)) for p in people]
            first = [_latex_to_text(" ".join(p.first_names + p.middle_names)) for p in people]
            fields = {k.lower(): _latex_to_text(v) for k, v in entry.fields.items()}
            entries[key] = {"type": entry.type, "last": last, "first": first, **fields}
    return entries


_LABEL_LINE = re.compile(r"^\((?P<label>[\w\-:.]+)\)=\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


def _page_labels(text: str, stem: str) -> dict[str, tuple[str, str]]:
    """Every ``(label)=`` before a heading and every exercise ``:label:`` of one page: label -> (page, text)."""
    labels: dict[str, tuple[str, str]] = {}
    lines = text.splitlines()
    number = 0
    for i, line in enumerate(lines):
        m = _LABEL_LINE.match(line)
        if m:
            heading = next((_HEADING.match(x) for x in lines[i + 1:i + 4] if _HEADING.match(x)), None)
            labels[m["label"]] = (stem, heading.group(2).strip() if heading else m["label"])
        if re.match(r"^(`{3,}|:{3,})\{exercise\}", line):
            number += 1
            for option in lines[i + 1:i + 6]:
                opt = re.match(r"^:label:\s*(\S+)", option)
                if opt:
                    labels[opt.group(1)] = (stem, f"Exercise {number}")
    return labels


def _book_labels(root: Path) -> dict[str, tuple[str, str]]:
    labels: dict[str, tuple[str, str]] = {}
    for page in sorted((root / "book").glob("*.md")):
        labels.update(_page_labels(page.read_text(), page.stem))
    return labels


def _author_text(entry: dict, full: bool = False) -> str:
    last = entry["last"] or [entry.get("title", "?")]
    if full or len(last) <= 2:
        return " and ".join(last) if len(last) <= 2 else ", ".join(last[:-1]) + " and " + last[-1]
    return f"{last[0]} et al."


def _reference_text(key: str, entry: dict) -> str:
    """One works-cited line: "Rumelhart, D. E., Hinton, G. E. and Williams, R. J. (1986). Title. *Nature*, 323(6088), 533-536."."""
    names = []
    for last, first in zip(entry["last"], entry["first"]):
        initials = " ".join(part[0] + "." for part in re.split(r"[\s\-]+", first) if part)
        names.append(f"{last}, {initials}" if initials else last)
    authors = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)
    title = entry.get("title", key).rstrip(".")
    parts = [f"{authors} ({entry.get('year', 'n.d.')}). {title}{'' if title.endswith(('?', '!')) else '.'}"]
    venue = entry.get("journal") or entry.get("booktitle") or entry.get("publisher") or entry.get("howpublished")
    if venue:
        detail = f"*{venue}*"
        if entry.get("volume"):
            detail += f", {entry['volume']}" + (f"({entry['number']})" if entry.get("number") else "")
        if entry.get("pages"):
            detail += f", {entry['pages'].replace('--', '-')}"
        parts.append(detail + ".")
    if entry.get("doi"):
        parts.append(f"[doi:{entry['doi']}](https://doi.org/{entry['doi']})")
    elif entry.get("url"):
        parts.append(f"<{entry['url']}>")
    return " ".join(parts)


# -- glued values --------------------------------------------------------------------
def glue_values(executed) -> dict[str, dict]:
    """{name: mime bundle} of every ``glue(name, value)`` in an executed notebook (prefix removed)."""
    values: dict[str, dict] = {}
    for cell in executed.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook")
            if not meta:
                continue
            prefix = len(meta.get("mime_prefix", ""))
            values[meta["name"]] = {k[prefix:]: v for k, v in output.get("data", {}).items()}
    return values


def format_plain_text(text: str, fmt_spec: str) -> str:
    """What the book shows for ``{glue:text}`key:fmt```: the value's text/plain, formatted (as myst-nb does)."""
    try:
        value = literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    if fmt_spec == "":
        return str(value)
    type_char = fmt_spec[-1]
    if type_char == "s":
        value = str(value)
    elif type_char in "bcdoxX":
        value = int(value)
    elif type_char in "eEfFgGn%":
        value = float(value)
    return format(value, fmt_spec)


def glued_texts(chapter_text: str, glue: dict[str, dict]) -> dict[str, str]:
    """{role content: text the book shows} for every ``{glue:text}`` role in a chapter's source."""
    shown = {}
    for content in re.findall(r"\{glue:text\}`([^`]+)`", chapter_text):
        key, _, fmt = content.partition(":") if ":" in content else (content, "", "s")
        shown[content] = format_plain_text(glue[key]["text/plain"], fmt)
    return shown


def placeholder(key: str) -> str:
    """What a notebook made from the *unexecuted* chapter shows where the book shows the glued value ``key``."""
    return f"[`{key}`]"


# -- Markdown: roles ------------------------------------------------------------------
_ROLE_NAME = re.compile(r"\{([A-Za-z][\w:\-]*)\}$")
_TITLE_TARGET = re.compile(r"^(?P<title>.*?)\s*<(?P<target>[^<>]+)>$", re.S)
_ADMONITIONS = {"note", "tip", "hint", "important", "warning", "caution", "attention", "danger",
                "error", "seealso", "admonition", "margin", "sidebar", "topic", "epigraph", "prf:remark"}


class _Converter:
    """Turns one chapter's MyST Markdown cells into plain Markdown."""

    def __init__(self, book: Book, page: str, glue: dict[str, dict] | None, student: bool, text: str = ""):
        self.book, self.page, self.glue, self.student = book, page, glue, student
        self.cited: list[str] = []
        self.exercise_number = 0
        self.local = _page_labels(text, page)  # this page's labels, forward references included
        self.exercises: dict[str, int] = {     # label -> number in this chapter
            label: int(what.split()[1]) for label, (_, what) in self.local.items() if what.startswith("Exercise ")}

    # inline ------------------------------------------------------------------------
    def inline(self, text: str) -> str:
        """Replace every role in ``text``; code spans are left alone."""
        out, i = [], 0
        while i < len(text):
            tick = text.find("`", i)
            if tick < 0:
                out.append(text[i:])
                break
            run = len(text[tick:]) - len(text[tick:].lstrip("`"))
            close = text.find("`" * run, tick + run)
            while close >= 0 and text[close + run:close + run + 1] == "`":
                close = text.find("`" * run, close + run + 1)
            if close < 0:
                out.append(text[i:])
                break
            before = text[i:tick]
            role = re.search(r"\{([A-Za-z][\w:\-]*)\}$", before)
            content = text[tick + run:close]
            if role:
                out.append(before[:role.start()])
                out.append(self.role(role.group(1), content.strip() if run > 1 else content))
            else:
                out.append(before + text[tick:close + run])
            i = close + run
        return "".join(out)

    def role(self, name: str, content: str) -> str:
        if name.startswith("glue"):
            return self.glue_role(name, content)
        if name.startswith("cite"):
            return self.cite(name, content)
        if name == "term":
            m = _TITLE_TARGET.match(content)
            text, term = (m["title"], m["target"]) if m else (content, content)
            anchor = "term-" + re.sub(r"[^\w\-.]+", "-", term.strip()).strip("-")
            return f"[{text}]({self.book.url}book/glossary.html#{anchor})"
        if name in ("ref", "numref", "doc", "eq", "download"):
            return self.reference(name, content)
        if name == "math":
            return f"${content}$"
        if name in ("sub", "sup", "kbd"):
            return f"<{name}>{html.escape(content)}</{name}>"
        if name in ("abbr", "index", "dfn"):
            return re.sub(r"\s*\(.*\)$", "", content) if name == "index" else content
        if name.startswith("py:") or name in ("code", "file", "command", "program", "samp"):
            return f"`{content}`"
        raise ExportError(f"{self.page}: the role {{{name}}} has no plain-Markdown form in the notebook export")

    def glue_role(self, name: str, content: str) -> str:
        kind = name.partition(":")[2] or "any"
        key, fmt = content, ""
        if kind == "text":
            key, _, fmt = content.rpartition(":") if ":" in content else ("", "", "")
            key, fmt = (key, fmt) if key else (content, "s")
        if "::" in key:
            raise ExportError(f"{self.page}: glue from another page ({content}) is not supported")
        if self.glue is None:  # made from the unexecuted chapter
            return placeholder(key)
        if key not in self.glue:
            raise ExportError(f"{self.page}: {{{name}}}`{content}`: nothing was glued as {key!r}")
        data = self.glue[key]
        if kind == "md" and "text/markdown" in data:
            return data["text/markdown"]
        if kind == "math" and "text/latex" in data:
            return data["text/latex"]
        if "text/plain" not in data:
            raise ExportError(f"{self.page}: {key!r} has no text/plain form")
        return format_plain_text(data["text/plain"], fmt) if kind == "text" else data["text/plain"]

    def cite(self, name: str, content: str) -> str:
        style = name.partition(":")[2] or "p"
        keys = [k.strip() for k in content.split(",") if k.strip()]
        for key in keys:
            if key not in self.book.bib:
                raise ExportError(f"{self.page}: {{cite}}`{key}` is not in the bibliography")
            if key not in self.cited:
                self.cited.append(key)
        full = style in ("ps", "ts")
        parts = []
        for key in keys:
            entry = self.book.bib[key]
            authors, year = _author_text(entry, full), entry.get("year", "n.d.")
            link = f"#ref-{key}"
            if style in ("t", "ts"):
                parts.append(f"{authors} [({year})]({link})")
            elif style == "author":
                parts.append(authors)
            elif style in ("year", "yearpar"):
                parts.append(f"[{year}]({link})")
            else:  # p, ps, alp
                parts.append(f"[{authors}, {year}]({link})")
        if style in ("t", "ts", "author"):
            return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
        joined = "; ".join(parts)
        return joined if style == "alp" else f"({joined})"

    def reference(self, name: str, content: str) -> str:
        m = _TITLE_TARGET.match(content)
        title, target = (m["title"], m["target"]) if m else (None, content)
        if name == "doc":
            page = Path(target).stem
            return f"[{title or page}]({self.book.url}book/{page}.html)"
        if name == "eq":
            return f"([{target}](#{target}))"
        if name == "download":
            return title or target
        if target in self.local:
            return f"[{title or self.local[target][1]}](#{target})"
        if target in self.book.labels:
            page, text = self.book.labels[target]
            return f"[{title or text}]({self.book.url}book/{page}.html#{target})"
        raise ExportError(f"{self.page}: {{{name}}}`{content}`: no such label in the book")

    # blocks ------------------------------------------------------------------------
    def markdown(self, text: str) -> str:
        """Convert one Markdown cell (directives, targets, comments, roles)."""
        lines = text.splitlines()
        out: list[str] = []
        prose: list[str] = []   # consecutive lines of prose: a role may span a line break

        def flush() -> None:
            if prose:
                out.extend(self.inline("\n".join(prose)).split("\n"))
                prose.clear()

        i = 0
        while i < len(lines):
            line = lines[i]
            fence = re.match(r"^(?P<indent>\s*)(?P<fence>`{3,}|:{3,})(?P<info>.*)$", line)
            if fence:
                flush()
                mark = fence["fence"]
                close = re.compile(rf"^\s*{re.escape(mark[0])}{{{len(mark)},}}\s*$")
                j = i + 1
                while j < len(lines) and not close.match(lines[j]):
                    j += 1
                body = lines[i + 1:j]
                info = fence["info"].strip()
                directive = re.match(r"^\{(?P<name>[\w:\-]+)\}\s*(?P<arg>.*)$", info)
                if directive:
                    out.extend(self.directive(directive["name"], directive["arg"].strip(), body).splitlines())
                else:  # a plain code block: copied as it is
                    out.extend(lines[i:j + 1])
                i = j + 1
                continue
            target = _LABEL_LINE.match(line)
            if target:
                flush()
                out.append(f'<a id="{target["label"]}"></a>')
            elif re.match(r"^%", line) or line.strip() == "+++" or re.match(r"^\+\+\+\s*\{", line):
                flush()   # a MyST comment, or a cell break
            else:
                prose.append(line)
            i += 1
        flush()
        return "\n".join(out).strip("\n")

    @staticmethod
    def options(body: list[str]) -> tuple[dict[str, str], list[str]]:
        opts: dict[str, str] = {}
        if body and body[0].strip() == "---":
            import yaml

            end = next(k for k in range(1, len(body)) if body[k].strip() == "---")
            opts = {str(k): str(v) for k, v in (yaml.safe_load("\n".join(body[1:end])) or {}).items()}
            return opts, body[end + 1:]
        k = 0
        while k < len(body) and re.match(r"^:[\w\-]+:", body[k]):
            m = re.match(r"^:([\w\-]+):\s*(.*)$", body[k])
            opts[m.group(1)] = m.group(2)
            k += 1
        return opts, body[k:]

    def directive(self, name: str, arg: str, body_lines: list[str]) -> str:
        opts, body_lines = self.options(body_lines)
        body = "\n".join(body_lines).strip("\n")
        anchor = f'<a id="{opts["label"]}"></a>\n' if "label" in opts else ""
        if name == "exercise":
            self.exercise_number += 1
            title = f"Exercise {self.exercise_number}" + (f": {self.inline(arg)}" if arg else "")
            return f"{anchor}### {title}\n\n{self.markdown(body)}"
        if name == "solution":
            if self.student:
                return ""
            number = self.exercises.get(arg)
            summary = f"Solution to Exercise {number}" if number else "Solution"
            return f"<details>\n<summary>{summary}</summary>\n\n{self.markdown(body)}\n\n</details>"
        if name == "solution-start":
            if self.student:
                return ""
            number = self.exercises.get(arg)
            return f"**Solution to Exercise {number}**" if number else "**Solution**"
        if name == "solution-end":
            return ""
        if name in _ADMONITIONS or name.startswith("prf:"):
            title = self.inline(arg) if name == "admonition" else name.split(":")[-1].capitalize()
            text = self.markdown(body) if name == "admonition" or not arg else self.inline(arg) + "\n\n" + self.markdown(body)
            quoted = "\n".join("> " + line if line else ">" for line in text.splitlines())
            return f"{anchor}> **{title}**\n>\n{quoted}"
        if name == "dropdown":
            return f"<details>\n<summary>{self.inline(arg) or 'Details'}</summary>\n\n{self.markdown(body)}\n\n</details>"
        if name == "math":
            return f"{anchor}$$\n{body}\n$$"
        if name in ("code-block", "code", "sourcecode"):
            return f"```{arg}\n{body}\n```"
        if name in ("figure", "image"):
            caption = self.markdown(body) if name == "figure" else ""
            image = f"![{opts.get('alt', '')}]({arg})"
            return f"{anchor}{image}" + (f"\n\n*{caption}*" if caption else "")
        if name == "table":
            return f"{anchor}{self.markdown(body)}" + (f"\n\n*{self.inline(arg)}*" if arg else "")
        if name.startswith("glue"):
            return self.glue_block(arg, name)
        raise ExportError(f"{self.page}: the directive {{{name}}} has no plain-Markdown form in the notebook export")

    def glue_block(self, key: str, name: str) -> str:
        if self.glue is None:  # made from the unexecuted chapter
            return f"*[{placeholder(key)}: a figure or table the chapter computes; the book's page shows it]*"
        if key not in self.glue:
            raise ExportError(f"{self.page}: {{{name}}} {key}: nothing was glued under that name")
        data = self.glue[key]
        for mime in ("image/png", "image/jpeg"):
            if mime in data:
                return f'<img src="data:{mime};base64,{data[mime].strip()}" alt="{html.escape(key)}"/>'
        if "image/svg+xml" in data:
            svg = base64.b64encode(data["image/svg+xml"].encode()).decode()
            return f'<img src="data:image/svg+xml;base64,{svg}" alt="{html.escape(key)}"/>'
        if "text/markdown" in data:
            return data["text/markdown"]
        if "text/latex" in data:
            return data["text/latex"]
        return f"```\n{data.get('text/plain', '')}\n```"

    def works_cited(self) -> str:
        lines = ["## Works cited", ""]
        for key in sorted(self.cited, key=lambda k: (self.book.bib[k]["last"] or [k])[0].lower()):
            lines.append(f'- <a id="ref-{key}"></a>{_reference_text(key, self.book.bib[key])}')
        return "\n".join(lines)


# -- code cells ---------------------------------------------------------------------
_MYST_GLUE = re.compile(r"^(?P<indent>[ \t]*)from myst_nb import glue\b", re.M)
_BUILTINS = set(dir(__import__("builtins")))


_TRANSFORMER: list = []  # IPython's cell transformer (magics to Python), made once


def _parse(source: str) -> ast.Module | None:
    if not _TRANSFORMER:
        try:
            from IPython.core.inputtransformer2 import TransformerManager

            _TRANSFORMER.append(TransformerManager())
        except ImportError:
            _TRANSFORMER.append(None)
    try:
        return ast.parse(source)  # plain Python: IPython's transforms would leave it as it is
    except SyntaxError:
        if _TRANSFORMER[0] is None:
            return None
    try:
        return ast.parse(_TRANSFORMER[0].transform_cell(source))  # magics (%pip, !ls) to Python
    except SyntaxError:
        return None


def _stored_node(node: ast.AST) -> set[str]:
    """The name ``node`` itself binds (not its children's), as a set of zero or one."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
        return {node.id}
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, ast.alias):
        return {(node.asname or node.name).split(".")[0]}
    if isinstance(node, ast.arg):
        return {node.arg}
    return set()


def _stored(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        names |= _stored_node(node)
    return names


def _free(tree: ast.AST) -> set[str]:
    loaded = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return loaded - _stored(tree) - _BUILTINS


def _stored_unchecked(tree: ast.Module) -> set[str]:
    """``_stored(_strip_checks(tree))``, without copying the tree: names bound outside assertions and glue calls."""
    names: set[str] = set()
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.stmt) and _is_glue_or_assert(node):
            continue
        names |= _stored_node(node)
        todo.extend(ast.iter_child_nodes(node))
    return names


def _is_glue_or_assert(node: ast.stmt) -> bool:
    if isinstance(node, ast.Assert):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        fn = node.value.func
        return isinstance(fn, ast.Name) and fn.id == "glue"
    if isinstance(node, ast.ImportFrom) and node.module == "myst_nb":
        return True
    return False


def _strip_checks(tree: ast.Module) -> ast.Module:
    """The module without its assertions, ``glue`` calls and myst_nb imports (at any depth)."""
    tree = copy.deepcopy(tree)

    class Strip(ast.NodeTransformer):
        def generic_visit(self, node):
            super().generic_visit(node)
            for name in ("body", "orelse", "finalbody"):
                block = getattr(node, name, None)
                if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                    kept = [s for s in block if not _is_glue_or_assert(s)]
                    if not kept and not isinstance(node, ast.Module) and name == "body":
                        kept = [ast.Pass()]
                    setattr(node, name, kept)
            return node

    return ast.fix_missing_locations(Strip().visit(tree))


def _rewrite_code(source: str, page: str) -> str:
    source = _MYST_GLUE.sub(r"\g<indent>from companion.book import glue", source)
    if "myst_nb" in source:
        raise ExportError(f"{page}: a visible cell uses myst_nb beyond `from myst_nb import glue`:\n{source}")
    return source


def _hidden_cells_needed(code_cells: list, hidden: set[int]) -> set[int]:
    """Indices of hidden cells that define a name a later kept cell reads before defining it."""
    trees = [_parse(c.source) for c in code_cells]
    free = [_free(tree) if tree is not None else set() for tree in trees]
    stored = [set() if tree is None else _stored_unchecked(tree) if i in hidden else _stored(tree)
              for i, tree in enumerate(trees)]
    needed: set[int] = set()
    changed = True
    while changed:
        changed = False
        last_definer: dict[str, int] = {}
        for i in range(len(code_cells)):
            if i not in hidden or i in needed:
                for name in free[i]:
                    j = last_definer.get(name)
                    if j is not None and j in hidden and j not in needed:
                        needed.add(j)
                        changed = True
            for name in stored[i]:
                last_definer[name] = i
    return needed


# -- the reader's notebook -------------------------------------------------------------
def install_source(ref: str | None = None, book: Book | None = None) -> str:
    """The pip requirement the first cell installs: the package at commit or tag ``ref`` of the repository."""
    book = book or Book.load()
    ref = ref or git_commit(book.root) or "main"
    return f"{DISTRIBUTION} @ git+{book.repository}@{ref}"


def _code_cell(source: str, metadata: dict | None = None):
    """A v4 code cell, as ``nbformat.v4.new_code_cell`` makes it, not validated on its own."""
    from nbformat import NotebookNode, from_dict
    from nbformat.corpus.words import generate_corpus_id

    return NotebookNode(id=generate_corpus_id(), cell_type="code", metadata=from_dict(metadata or {}),
                        execution_count=None, source=source, outputs=[])


def _markdown_cell(source: str):
    from nbformat import NotebookNode
    from nbformat.corpus.words import generate_corpus_id

    return NotebookNode(id=generate_corpus_id(), cell_type="markdown", metadata=NotebookNode(), source=source)


def install_cell(requirement: str):

    source = (
        "# Install the course's companion package, at the version this notebook was made from,\n"
        "# with its run-time dependencies (it keeps a torch that is already installed, as on Colab).\n"
        "# Skip this cell if the course environment is installed (README: \"Start here\").\n"
        f'%pip install --quiet "{requirement}"'
    )
    return _code_cell(source, metadata={"tags": [INSTALL_TAG]})


def reader_notebook(
    chapter: Path,
    executed=None,
    *,
    student: bool = False,
    skeleton: Callable[[str], str] | None = None,
    requirement: str | None = None,
    book: Book | None = None,
    execute: bool = True,
    source=None,
):
    """The plain notebook a reader opens, made from ``chapter`` (a book/NN-*.md) and its executed form.

    ``executed``: the executed chapter (an nbformat notebook whose glue outputs
    hold the values; every ``{glue}`` of the chapter must be among them). By
    default the book's cached execution; if the cache has none, the chapter is
    executed now (and cached), or, with ``execute=False``, the notebook is made
    from the unexecuted chapter and each glued value is shown as
    :func:`placeholder` (the cells compute it when the notebook runs).
    ``student=True`` drops the ``{solution}`` blocks and replaces each code cell
    of a gated solution by ``skeleton(source)`` (coursework passes its own; the
    default drops the cell); :func:`companion.coursework.student_notebook` is
    this with coursework's skeleton. ``requirement``: what the first cell
    installs (default: this commit of the repository). ``source``: the chapter
    as :func:`read_chapter` reads it, if the caller has read it already. Raises
    :class:`ExportError` for MyST it cannot convert.
    """
    import nbformat

    chapter = Path(chapter).resolve()
    book = book or Book.load()
    if executed is None:
        executed = executed_chapter(chapter, book.root) if execute else valid_cached_chapter(chapter, book.root)
    source_nb = source if source is not None else read_chapter(chapter)
    glue = glue_values(executed) if executed is not None else None
    convert = _Converter(book, chapter.stem, glue, student, chapter.read_text())

    code_cells = [c for c in source_nb.cells if c.cell_type == "code"]
    hidden = {i for i, c in enumerate(code_cells) if "remove-cell" in c.metadata.get("tags", [])}
    needed = _hidden_cells_needed(code_cells, hidden)

    cells = [install_cell(requirement or install_source(book=book))]
    page_url = f"{book.url}book/{chapter.stem}.html"
    heading = re.search(r"^# (.+)$", next((c.source for c in source_nb.cells if c.cell_type == "markdown"), ""), re.M)
    title = heading.group(1).strip() if heading else chapter.stem
    how = ("Write your code where a function raises `NotImplementedError`, then run the `check(...)` cell after it."
           if student else "Run the cells from the top.")
    numbers = ("the numbers in the text are those of the book's own run" if glue is not None else
               f"a number the text quotes from the chapter's run is shown as {placeholder('its_name')}: the book's "
               "page gives its value, and the cells compute it as you run them")
    cells.append(_markdown_cell(
        f"*{'The student version of' if student else 'A notebook of'} the chapter [{title}]({page_url}) of the course "
        f"[Beyond Backprop]({book.url}); {numbers}. {how}*"
    ))

    in_solution = False
    code_index = -1
    for cell in source_nb.cells:
        if cell.cell_type == "markdown":
            text = cell.source
            starts = bool(re.search(r"^(`{3,}|:{3,})\{solution-start\}", text, re.M))
            ends = bool(re.search(r"^(`{3,}|:{3,})\{solution-end\}", text, re.M))
            converted = convert.markdown(text)
            if starts:
                in_solution = True
            if ends:
                in_solution = False
            if converted.strip():
                cells.append(_markdown_cell(converted))
            continue
        if cell.cell_type != "code":
            continue
        code_index += 1
        tags = cell.metadata.get("tags", [])
        source = cell.source
        if code_index in hidden:
            if code_index not in needed:
                continue
            tree = _parse(source)
            source = "# Computed in a cell the book hides (a value a later cell uses).\n" + ast.unparse(_strip_checks(tree))
        source = _rewrite_code(source, chapter.stem)
        metadata: dict[str, Any] = {}
        if in_solution:
            if student:
                if skeleton is None:
                    continue
                source = skeleton(source)
            else:
                metadata = {"tags": [SOLUTION_TAG], "jupyter": {"source_hidden": True}}
        elif {"hide-input", "hide-cell", "remove-input"} & set(tags):
            metadata = {"jupyter": {"source_hidden": True}}
        if "raises-exception" in tags:  # a cell that shows an error on purpose (Jupyter and nbclient honour it)
            metadata.setdefault("tags", []).append("raises-exception")
        cells.append(_code_cell(source, metadata=metadata))
    if in_solution:
        raise ExportError(f"{chapter.name}: a solution-start has no matching solution-end")
    if convert.cited:
        cells.append(_markdown_cell(convert.works_cited()))

    nb = nbformat.v4.new_notebook()  # validated once, below, with its cells
    nb.cells = cells
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata[METADATA_KEY] = {"chapter": chapter.stem, "student": student, "numbers": glue is not None,
                                 "source": str(chapter.relative_to(book.root)) if chapter.is_relative_to(book.root) else chapter.name}
    nbformat.validate(nb)
    return nb


def write_reader_notebooks(out_dir: Path, chapter_paths: list[Path] | None = None, **kwargs) -> list[Path]:
    """Write ``<out_dir>/book/<chapter>.ipynb`` for every chapter in _toc.yml (or those given)."""
    import nbformat

    from companion.toc import chapters

    book = kwargs.pop("book", None) or Book.load()
    written = []
    for chapter in chapter_paths or chapters(book.root):
        nb = reader_notebook(chapter, book=book, **kwargs)
        path = Path(out_dir) / Path(chapter).resolve().relative_to(book.root).with_suffix(".ipynb")
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)
        written.append(path)
    return written


# -- reading and executing chapters ------------------------------------------------------
def read_chapter(path: Path):
    """A chapter as the book build reads it (myst-nb's reader, else jupytext): cells without outputs."""
    path = Path(path)
    try:
        from myst_nb.core.read import read_myst_markdown_notebook
        from myst_parser.config.main import MdParserConfig

        return read_myst_markdown_notebook(path.read_text(), MdParserConfig(), path=path)
    except ImportError:
        import jupytext

        return jupytext.read(path)


def git_commit(root: Path = ROOT) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def environment(root: Path = ROOT) -> dict[str, Any]:
    """What an execution ran on: versions, CPU, commit (recorded in the execution report)."""
    from importlib import metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = git_commit(root)
    dirty = None
    if commit:
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True)
        dirty = bool(status.stdout.strip())
    return {
        "executed": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": (commit or "unknown")[:12] + (" (with local changes)" if dirty else ""),
        "python": platform.python_version(),
        "torch": version("torch"),
        "numpy": version("numpy"),
        "platform": platform.platform(terse=True),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
    }


@contextlib.contextmanager
def kernel_manager(python: str = sys.executable):
    """A KernelManager that starts an IPython kernel with the given interpreter (not whatever `python3` resolves to).

    A context manager: the kernel spec lives in a temporary folder, removed on exit.
    """
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory(prefix="bb-kernel-") as tmp:
        spec_dir = Path(tmp)
        (spec_dir / "bb-python").mkdir()
        (spec_dir / "bb-python" / "kernel.json").write_text(json.dumps({
            "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3", "language": "python",
        }))
        ksm = KernelSpecManager(kernel_dirs=[str(spec_dir)])
        ksm.ensure_native_kernel = False
        yield KernelManager(kernel_name="bb-python", kernel_spec_manager=ksm)


def _kernel_env(python: str) -> dict[str, str]:
    # A kernel started with MPLBACKEND set (Agg, say) ignores the inline backend and
    # plt.show() draws nothing: the book would be built without its figures.
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    if Path(python).resolve() != Path(sys.executable).resolve():
        # another environment (a reader's fresh one): nothing of this one leaks in
        for key in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
            env.pop(key, None)
    bindir = str(Path(python).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    if (Path(python).parent.parent / "pyvenv.cfg").exists():
        env["VIRTUAL_ENV"] = str(Path(python).parent.parent)
    return env


def execute_notebook(nb, cwd: Path, *, python: str = sys.executable, timeout: int = 300,
                     stop_on_error: bool = True, install_timeout: int = 1800) -> list[dict]:
    """Execute ``nb`` in place, one cell at a time, in a fresh kernel run by ``python`` in ``cwd``.

    ``timeout``: seconds a cell may run; the first cell, which installs the
    package (tagged ``install-companion``), gets ``install_timeout``. Returns
    one report per code cell, in order: ``{"status": "ok" | "error" |
    "not run", "seconds", "error"}`` (``error``: the traceback as text). After
    the first error the remaining cells are not run unless ``stop_on_error``
    is false. Widget outputs (tqdm bars) are replaced by their final state as
    static HTML, so the book shows them without network access.
    """
    with kernel_manager(python) as km:
        reports = _execute_cells(nb, cwd, km, python, timeout, stop_on_error, install_timeout)
    static_widgets(nb)
    return reports


def _execute_cells(nb, cwd: Path, km, python: str, timeout: int, stop_on_error: bool,
                   install_timeout: int) -> list[dict]:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    # startup_timeout: a kernel in a fresh environment on a busy 2-core machine has been
    # seen to take over nbclient's default 60 s to answer; that is not the notebook's fault
    client = NotebookClient(nb, timeout=timeout, allow_errors=False, record_timing=False,
                            startup_timeout=300, km=km, resources={"metadata": {"path": str(cwd)}})
    reports: list[dict] = []
    failed = False
    with client.setup_kernel(env=_kernel_env(python), cwd=str(cwd)):
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if failed and stop_on_error:
                reports.append({"status": "not run", "seconds": 0.0, "error": None})
                continue
            start = time.perf_counter()
            client.timeout = install_timeout if INSTALL_TAG in cell.metadata.get("tags", []) else timeout
            try:
                client.execute_cell(cell, index)
                reports.append({"status": "ok", "seconds": time.perf_counter() - start, "error": None})
            except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
                failed = True
                reports.append({"status": "error", "seconds": time.perf_counter() - start,
                                "error": _strip_ansi(str(err))})
                if isinstance(err, DeadKernelError):
                    stop_on_error = True
        client.set_widgets_metadata()
        kernel_cpu = _process_cpu_seconds(getattr(client.km.provisioner, "pid", None))
    nb.metadata.setdefault(METADATA_KEY, {})["kernel_cpu_seconds"] = kernel_cpu
    return reports


def _process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a running process and its finished children (Linux /proc), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError):
        return None


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def static_widgets(nb) -> None:
    """Replace each widget output (a tqdm bar) by its final state as HTML and text; drop the widget state."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})

    def render(model_id: str) -> tuple[str, str]:
        model = state.get(model_id, {})
        name, s = model.get("model_name", ""), model.get("state", {})
        if name in ("HBoxModel", "VBoxModel", "BoxModel"):
            parts = [render(child.removeprefix("IPY_MODEL_")) for child in s.get("children", [])]
            return "".join(p[0] for p in parts), "".join(p[1] for p in parts)
        if name in ("HTMLModel", "LabelModel", "HTMLMathModel"):
            value = s.get("value", "")
            text = html.unescape(re.sub(r"<[^>]+>", "", value))
            return (f"<span>{value}</span>" if name != "LabelModel" else f"<span>{html.escape(value)}</span>"), text
        if name in ("FloatProgressModel", "IntProgressModel"):
            value, low, high = s.get("value", 0), s.get("min", 0), s.get("max", 100)
            frac = 0.0 if high == low else max(0.0, min(1.0, (value - low) / (high - low)))
            bar = "\u2588" * round(10 * frac) + " " * (10 - round(10 * frac))
            return (f'<progress value="{value - low}" max="{high - low}" style="margin: 0 0.5em">'
                    f"{frac:.0%}</progress>"), f"|{bar}|"
        return "", ""

    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW not in data:
                continue
            model_id = data[WIDGET_VIEW].get("model_id", "")
            rich, text = render(model_id)
            del data[WIDGET_VIEW]
            if rich:
                data["text/html"] = f'<div class="static-widget">{rich}</div>'
                data["text/plain"] = text
    nb.metadata.pop("widgets", None)


# -- the execution cache the book build reads ----------------------------------------------
def cache_dir(root: Path = ROOT) -> Path:
    return root / "_build" / ".jupyter_cache"


def fingerprint(root: Path = ROOT) -> str:
    """A hash of everything a chapter's results depend on besides its own cells.

    The companion package's files (code and the checkpoints it ships), the
    pinned requirements, and any checkpoint a chapter reads from book/.
    """
    digest = hashlib.sha256()
    package = [p for p in (root / "companion").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    files = sorted(package) + sorted(root.glob("requirements*.txt")) + sorted((root / "book").glob("checkpoints/*"))
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def fresh_cache(root: Path = ROOT):
    """The book's jupyter-cache, emptied first if the companion package changed since it was filled."""
    from jupyter_cache import get_cache

    path = cache_dir(root)
    stamp = path.parent / "companion.fingerprint"
    current = fingerprint(root)
    if path.exists() and (not stamp.exists() or stamp.read_text() != current):
        print("companion package changed since the chapters were executed: clearing the execution cache")
        shutil.rmtree(path, ignore_errors=True)  # another run may be clearing it too
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(current)
    return get_cache(str(path))


def cached_chapter(chapter: Path, root: Path = ROOT):
    """The executed chapter from the book's cache (with its record's data), or (None, None)."""
    from jupyter_cache import get_cache

    path = cache_dir(root)
    if not path.exists():
        return None, None
    cache = get_cache(str(path))
    nb = read_chapter(chapter)
    try:
        record = cache.match_cache_notebook(nb)
    except KeyError:
        return None, None
    return cache.get_cache_bundle(record.pk).nb, record.data


def store_executed(chapter: Path, executed, seconds: float, env: dict | None = None, root: Path = ROOT,
                   cpu_seconds: float | None = None) -> None:
    """Put an executed chapter in the book's cache, as the build's own execution would (plus its environment)."""
    from jupyter_cache.base import CacheBundleIn

    cache = fresh_cache(root)
    cache.cache_notebook_bundle(
        CacheBundleIn(executed, str(Path(chapter).resolve()),
                      data={"execution_seconds": seconds, "cpu_seconds": cpu_seconds,
                            "environment": env or environment(root)}),
        check_validity=False, overwrite=True,
    )


def execute_chapter(chapter: Path, timeout: int = 300):
    """Execute a chapter as the book does (its folder as working directory). Returns (notebook, reports, seconds)."""
    chapter = Path(chapter).resolve()
    nb = read_chapter(chapter)
    start = time.perf_counter()
    reports = execute_notebook(nb, chapter.parent, timeout=timeout)
    return nb, reports, time.perf_counter() - start


def valid_cached_chapter(chapter: Path, root: Path = ROOT):
    """The chapter's cached execution if the cache is still valid for this package (see :func:`fresh_cache`), else None.

    Unlike :func:`fresh_cache` it never clears a stale cache: it only ignores it.
    """
    stamp = cache_dir(root).parent / "companion.fingerprint"
    try:
        if stamp.read_text() != fingerprint(root):
            return None
    except OSError:
        return None
    return cached_chapter(chapter, root)[0]


def executed_chapter(chapter: Path, root: Path = ROOT):
    """The executed chapter: from the book's cache, else executed now (and cached). Raises if a cell fails."""
    fresh_cache(root)
    nb, _ = cached_chapter(chapter, root)
    if nb is not None:
        return nb
    nb, reports, seconds = execute_chapter(chapter)
    errors = [r["error"] for r in reports if r["status"] == "error"]
    if errors:
        raise RuntimeError(f"{Path(chapter).name} failed to execute:\n{errors[0]}")
    store_executed(chapter, nb, seconds, root=root)
    return nb


def execute_in_subprocess(notebook: Path, *, timeout: int = 300, python: str | None = None,
                          cwd: Path | None = None) -> dict:
    """Execute a chapter (.md) or notebook (.ipynb) in a child process; return its per-cell report.

    ``{"cells": [...], "problem": str | None, "notebook": executed .ipynb text,
    "wall": seconds, "cpu": user + system seconds of the child and its kernel}``.
    A child process per notebook keeps kernels apart, so several run at once.
    """
    with tempfile.TemporaryDirectory(prefix="bb-run-") as tmp:
        out, report = Path(tmp) / "executed.ipynb", Path(tmp) / "report.json"
        command = [sys.executable, "-m", "companion.export", "execute", str(notebook), "--out", str(out),
                   "--report", str(report), "--timeout", str(timeout)]
        if python:
            command += ["--python", python]
        if cwd:
            command += ["--cwd", str(cwd)]
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        result: dict[str, Any] = {"wall": time.perf_counter() - start, "cpu": usage.ru_utime + usage.ru_stime}
        if proc.returncode != 0 or not report.exists():
            result.update(cells=[], notebook=None,
                          problem=f"the executor exited with {proc.returncode}:\n{output[-4000:]}")
            return result
        data = json.loads(report.read_text())
        result.update(cells=data["cells"], problem=data["problem"], notebook=out.read_text())
        if data.get("kernel_cpu") is not None:
            result["cpu"] = data["kernel_cpu"] + data["client_cpu"]
        return result


def succeeded(result: dict) -> bool:
    return bool(result["cells"]) and not result["problem"] and all(c["status"] == "ok" for c in result["cells"])


def first_error(result: dict) -> str:
    if result["problem"]:
        return result["problem"]
    for number, cell in enumerate(result["cells"]):
        if cell["status"] == "error":
            return f"Cell {number}:\n{cell['error']}"
    return ""


def execute_chapters(chapter_paths: list[Path], jobs: int = 2, timeout: int = 300, root: Path = ROOT) -> dict:
    """Execute chapters ``jobs`` at a time; cache each that runs cleanly. Returns {chapter: result}."""
    import nbformat
    from concurrent.futures import ThreadPoolExecutor

    fresh_cache(root)
    results = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {c: pool.submit(execute_in_subprocess, c, timeout=timeout) for c in chapter_paths}
        for chapter, future in futures.items():
            result = results[chapter] = future.result()
            if succeeded(result):
                store_executed(chapter, nbformat.reads(result["notebook"], as_version=4), result["wall"], root=root,
                               cpu_seconds=result["cpu"])
    return results


def _main(argv: list[str] | None = None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("execute", help="execute a chapter (.md) or notebook (.ipynb) cell by cell")
    run.add_argument("notebook", type=Path)
    run.add_argument("--out", type=Path, required=True, help="write the executed notebook here")
    run.add_argument("--report", type=Path, required=True, help="write the per-cell report (JSON) here")
    run.add_argument("--python", default=sys.executable, help="interpreter the kernel runs (default: this one)")
    run.add_argument("--cwd", type=Path, help="kernel's working folder (default: the notebook's)")
    run.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    args = parser.parse_args(argv)
    path = args.notebook.resolve()
    nb = read_chapter(path) if path.suffix == ".md" else nbformat.read(path, as_version=4)
    start = time.perf_counter()
    cpu = time.process_time()
    try:
        reports = execute_notebook(nb, args.cwd or path.parent, python=args.python, timeout=args.timeout)
        problem = None
    except Exception as err:  # the kernel did not start, or died outside a cell
        reports, problem = [], f"{type(err).__name__}: {err}"
    seconds = time.perf_counter() - start
    kernel_cpu = nb.metadata.get(METADATA_KEY, {}).pop("kernel_cpu_seconds", None)
    if not nb.metadata.get(METADATA_KEY):
        nb.metadata.pop(METADATA_KEY, None)
    nbformat.write(nb, args.out)
    args.report.write_text(json.dumps({"cells": reports, "seconds": seconds, "problem": problem,
                                       "client_cpu": time.process_time() - cpu, "kernel_cpu": kernel_cpu}))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
