"""Formatting shared by the sections of ``benchmarks.md``: latencies, ratios, tables."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: The en dash of ranges ("1.0 ms\u20132.0 ms").
DASH = "\u2013"

Stats = dict[str, float]


def seconds(value: float) -> str:
    """A duration with the unit and precision that keep it short (s, ms or µs)."""
    if value >= 1.0:
        return f"{value:.2f} s"
    ms = value * 1000
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    if ms >= 0.1:
        return f"{ms:.2f} ms"
    return f"{ms * 1000:.0f} µs"


def lat(stats: Stats | None) -> str:
    """``median (min to max)`` of seconds."""
    if not stats:
        return "—"
    return f"{seconds(stats['median'])} ({seconds(stats['min'])}{DASH}{seconds(stats['max'])})"


def _factor(value: float) -> str:
    """Two decimals, or two significant digits below 0.1."""
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"


def times(stats: Stats | None) -> str:
    """``median x (min to max)`` of a ratio."""
    if not stats:
        return "—"
    return f"{_factor(stats['median'])}x ({_factor(stats['min'])}{DASH}{_factor(stats['max'])})"


def plain(stats: Stats | None, digits: int = 1) -> str:
    """``median (min to max)`` of a plain number, ``digits`` decimals."""
    if not stats:
        return "—"
    low, high = f"{stats['min']:.{digits}f}", f"{stats['max']:.{digits}f}"
    return f"{stats['median']:.{digits}f} ({low}{DASH}{high})"


def quotient(a: Stats | None, b: Stats | None) -> str:
    """Ratio of two medians measured in the same run (not paired)."""
    if not a or not b or not b["median"]:
        return "—"
    return f"{_factor(a['median'] / b['median'])}x"


def table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    """A Markdown table and the blank line after it."""
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def reason(section: dict[str, Any] | None) -> str | None:
    """Why a section produced nothing, or None if it did."""
    if section is None:
        return "not run"
    if "not_run" in section:
        return f"not run: {section['not_run']}"
    if "failed" in section:
        return f"failed: {section['failed']}"
    return None


def rows_by_length(section: dict[str, Any] | None) -> dict[int, dict[str, Any]]:
    """A section's ``rows`` keyed by thread length; empty if it produced nothing."""
    if not section or reason(section):
        return {}
    return {row["length"]: row for row in section.get("rows", [])}


def traffic(window: dict[str, Any] | None) -> str:
    """``round trips / bytes sent / bytes received`` of a command-monitoring window."""
    if not window:
        return "—"
    return f"{window['round_trips']} / {window['bytes_sent']:,} / {window['bytes_received']:,}"
