"""``glue`` for chapters that run with or without the book's build tools.

In the book build a chapter's ``glue(name, value)`` hands a computed value to
the prose (myst-nb's ``{glue:text}`` role). A reader's notebook (Colab, a
download, a student notebook) has the numbers already written into its text,
and its environment has no myst-nb, so there ``glue`` only shows the value
when asked to (``display=True``), as myst-nb would, and otherwise does nothing.

    from companion.book import glue      # instead of: from myst_nb import glue
"""

from __future__ import annotations

from typing import Any

__all__ = ["glue"]


def glue(name: str, variable: Any, display: bool = True) -> None:
    """Record ``variable`` under ``name`` for the book, or just show it (``display=True``) without myst-nb."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        if display:
            from IPython.display import display as show

            show(variable)
        return None
    return myst_glue(name, variable, display=display)
