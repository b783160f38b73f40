"""Writes ``benchmarks.md`` and the ``bench-*.png`` plots from a run's results.

Each section renders its own part of the page, in the module that measures it; this
module puts the parts in order and closes the page with what could not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import adapters, concurrency, intro, memory, ops, original, ours, overflow, peers
from bench.page import Page, Render

PAGE = "benchmarks.md"


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
SECTIONS: tuple[Render, ...] = (
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
    page = Page(results, out)
    lines: list[str] = []
    for render in SECTIONS:
        lines += render(page)
    text = "\n".join(lines).rstrip() + "\n"
    path = out / PAGE
    path.write_text(text, encoding="utf-8")
    return path
