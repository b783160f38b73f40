"""The page being written, as every section sees it, and the guard of a measured section."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.markdown import reason

Render = Callable[["Page"], list[str]]


class Page:
    """The run's results, and the notes and plots the sections leave on the page.

    Args:
        results: What ``python -m bench`` measured (as saved by ``--json``).
        out: The directory the page and its plots go to.
    """

    def __init__(self, results: dict[str, Any], out: Path) -> None:
        self.results = results
        self.meta: dict[str, Any] = results["meta"]
        self.plan: dict[str, Any] = results["plan"]
        self.sections: dict[str, Any] = results["sections"]
        self.out = out
        self.missing: list[str] = []
        self.plots: list[Path] = []

    def note_missing(self, what: str, why: str) -> None:
        """List ``what`` under "What could not run, and why"."""
        self.missing.append(f"- **{what}**: {why}")

    def not_measured(self, section: dict[str, Any] | None, what: str) -> list[str]:
        """Why ``section`` has no figures, as the lines to show in their place; ``[]`` if
        it has figures. The reason is also listed under ``what`` at the end of the page."""
        why = reason(section)
        if not why:
            return []
        self.note_missing(what, why)
        return [f"{why}.", ""]

    def plot(self, name: str, build: Callable[[Path], Any]) -> str:
        """Draw the plot ``name`` with ``build``; return its Markdown image line, or ``""``."""
        path = self.out / name
        try:
            build(path)
        except ImportError as exc:
            self.note_missing(f"plot {name}", f"not drawn: {exc} (pip install matplotlib)")
            return ""
        self.plots.append(path)
        return f"![{name}]({name})\n"


def measured(
    heading: str, key: str, missing_as: str
) -> Callable[[Callable[[Page, dict[str, Any]], list[str]]], Render]:
    """Make ``render(page, section)`` the renderer of the section saved under ``key``.

    The section gets its ``heading``; if it did not run (or failed), the reason stands
    in for its body and is listed as ``missing_as`` under "What could not run, and why".
    """

    def wrap(render: Callable[[Page, dict[str, Any]], list[str]]) -> Render:
        @functools.wraps(render)
        def section(page: Page) -> list[str]:
            results = page.sections.get(key)
            missing = page.not_measured(results, missing_as)
            if missing or results is None:
                return [heading, "", *missing]
            return [heading, "", *render(page, results)]

        return section

    return wrap
