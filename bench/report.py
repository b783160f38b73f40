"""Writes ``benchmarks.md`` and the ``bench-*.png`` plots from a run's results.

Each section renders its own part of the page (``render(page)`` in the module that
measures it); this module puts the parts in order and closes the page with what could
not run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import adapters, concurrency, intro, memory, ops, original, ours, overflow, peers

PAGE = "benchmarks.md"


class Page:
    """The page being written: the run's results, and the notes and plots its sections leave.

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

    def build(self) -> str:
        """The whole page's Markdown."""
        lines: list[str] = []
        for render in SECTIONS:
            lines += render(self)
        return "\n".join(lines).rstrip() + "\n"


def not_run(page: Page) -> list[str]:
    """The closing section: whatever the sections before it noted as missing."""
    page.note_missing(
        "Bytes on mongomock",
        "not applicable: mongomock runs in process, there is no wire to monitor",
    )
    plan = page.plan
    if plan["mode"] == "smoke":
        page.note_missing(
            "Sizes",
            f"smoke mode: thread lengths {', '.join(map(str, plan['lengths']))}"
            f", memory thread of {plan['memory_length']} messages, "
            f"{plan['reps']} repetitions",
        )
    return ["## What could not run, and why", "", *(page.missing or ["Everything ran."]), ""]


#: The page's sections in order; each returns its Markdown lines.
SECTIONS: tuple[Callable[[Page], list[str]], ...] = (
    intro.header,
    intro.headline,
    intro.machine,
    intro.reproduce,
    intro.method,
    ours.render_post_cost,
    original.render,
    peers.render,
    ours.render_floor,
    ops.render,
    concurrency.render,
    memory.render,
    adapters.render,
    overflow.render,
    not_run,
)


def write(results: dict[str, Any], out: Path) -> Path:
    """Write ``benchmarks.md`` and its plots into ``out``; return the page's path."""
    text = Page(results, out).build()
    path = out / PAGE
    path.write_text(text, encoding="utf-8")
    return path
