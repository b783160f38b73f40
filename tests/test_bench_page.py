"""The benchmark page and plots are readable: tables have headers, no line hides another.

Pure tests of the page's sections (``bench.report``, ``bench.intro``) and ``bench.plots``
on made-up results; no server.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench import intro, plots, report

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "benchmarks.md"

META = {
    "date": "2026-11-25 08:45 UTC",
    "load_start": 0.5,
    "platform": "Linux",
    "cpu": "AMD EPYC",
    "cpu_count": 2,
    "implementation": "CPython",
    "python": "3.11.7",
    "pymongo": "4.20.1",
    "mongomock": "4.3.0",
    "server_kind": "SecantusDB (secantusd-py), started here",
    "server": "8.2.11",
    "secantusdb": "0.7.0b3",
    "threadmem_mongo": "0.1.0",
    "git": "abc1234",
}


def header_rows(markdown: str) -> list[list[str]]:
    """The header row of every table: the row above each ``|---|`` line."""
    lines = markdown.splitlines()
    return [
        [cell.strip() for cell in lines[index - 1].strip().strip("|").split("|")]
        for index, line in enumerate(lines)
        if re.fullmatch(r"\|(-{3,}\|)+", line.strip())
    ]


def test_machine_table_has_a_header(tmp_path: Path) -> None:
    page = report.Page({"meta": META, "plan": {}, "sections": {}}, tmp_path)

    text = "\n".join(intro.machine(page))
    assert header_rows(text) == [["Item", "Value"]]
    assert "| CPU | AMD EPYC, 2 logical CPUs |" in text


def test_every_table_of_the_published_page_has_a_header() -> None:
    headers = header_rows(PAGE.read_text(encoding="utf-8"))

    assert headers
    for header in headers:
        assert all(header), header


def concurrency_rows() -> list[dict[str, Any]]:
    """Shared-thread rows equal for threads and processes: the case that used to overlap."""
    rows = []
    for mode in ("threads", "processes"):
        for target, rates in (("one", [400, 226, 138, 88]), ("separate", [408, 391, 373, 339])):
            for writers, rate in zip((1, 2, 4, 8), rates, strict=True):
                stats = {"median": float(rate), "min": rate - 20.0, "max": rate + 10.0}
                rows.append(
                    {"mode": mode, "target": target, "writers": writers, "throughput": stats}
                )
    return rows


def test_concurrency_lines_of_equal_throughput_stay_apart() -> None:
    plt = plots._pyplot()
    fig, ax = plt.subplots()
    try:
        plots.draw_concurrency(ax, concurrency_rows())
        # Each errorbar() call is one container; its first line is the data line.
        lines = {bars.get_label(): bars.lines[0] for bars in ax.containers}
        threads = lines["threads, one shared thread"]
        processes = lines["processes, one shared thread"]

        assert list(threads.get_ydata()) == list(processes.get_ydata())
        for x_threads, x_processes in zip(threads.get_xdata(), processes.get_xdata(), strict=True):
            assert x_threads < x_processes
        assert threads.get_linestyle() != processes.get_linestyle()
        assert threads.get_marker() != processes.get_marker()
        assert threads.get_color() != lines["threads, a thread each"].get_color()
    finally:
        plt.close(fig)


def test_concurrency_plot_writes_a_png(tmp_path: Path) -> None:
    written = plots.concurrency_plot(tmp_path / "concurrency.png", concurrency_rows())

    assert written.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
