"""The PNG plots beside ``benchmarks.md`` (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

Series = tuple[str, list[float], list[dict[str, float]]]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _errorbars(ax: Any, series: list[Series], scale: float) -> None:
    for label, xs, stats in series:
        if not xs:
            continue
        medians = [s["median"] * scale for s in stats]
        below = [(s["median"] - s["min"]) * scale for s in stats]
        above = [(s["max"] - s["median"]) * scale for s in stats]
        ax.errorbar(xs, medians, yerr=[below, above], marker="o", capsize=3, label=label)


def latency_plot(path: Path, title: str, series: list[Series], *, ylabel: str) -> Path:
    """Per-operation latency (ms) against messages in the thread, log-log, min-max bars."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    _errorbars(ax, series, 1000.0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("messages already in the thread")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def bytes_plot(path: Path, series: list[tuple[str, list[float], list[float]]]) -> Path:
    """Bytes on the wire per operation against thread length."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    markers = "osD^v<>"
    for index, (label, xs, ys) in enumerate(series):
        if xs:
            ax.plot(
                xs,
                ys,
                marker=markers[index % len(markers)],
                linestyle="-" if index % 2 == 0 else "--",
                label=label,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("messages already in the thread")
    ax.set_ylabel("bytes per operation (command + reply, BSON)")
    ax.set_title("Bytes on the wire per operation (command monitoring)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


#: How each way of running writers is drawn in the concurrency plot. Shared-thread lines
#: of threads and processes lie almost on top of each other, so the two differ in line
#: style and marker, and each is nudged sideways (a factor on the log-2 writers axis)
#: so that neither line nor error bar hides the other.
CONCURRENCY_STYLES = {
    "threads": {"linestyle": "-", "marker": "o", "markerfacecolor": None, "nudge": 2**-0.04},
    "processes": {"linestyle": "--", "marker": "s", "markerfacecolor": "white", "nudge": 2**0.04},
}
CONCURRENCY_COLOURS = {"one": "tab:red", "separate": "tab:blue"}


def concurrency_plot(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Throughput against writers, one line per (mode, target)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    draw_concurrency(ax, rows)
    ax.get_xaxis().set_major_formatter(plt.ScalarFormatter())
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def draw_concurrency(ax: Any, rows: list[dict[str, Any]]) -> None:
    """Draw the concurrency lines on ``ax``: colour by target, style by mode."""
    keys = sorted({(r["mode"], r["target"]) for r in rows})
    for mode, target in keys:
        chosen = sorted(
            (r for r in rows if r["mode"] == mode and r["target"] == target),
            key=lambda r: r["writers"],
        )
        style = CONCURRENCY_STYLES.get(mode, {"linestyle": ":", "marker": "^", "nudge": 1.0})
        xs = [r["writers"] * style["nudge"] for r in chosen]
        stats = [r["throughput"] for r in chosen]
        medians = [s["median"] for s in stats]
        below = [s["median"] - s["min"] for s in stats]
        above = [s["max"] - s["median"] for s in stats]
        label = f"{mode}, {'one shared thread' if target == 'one' else 'a thread each'}"
        ax.errorbar(
            xs,
            medians,
            yerr=[below, above],
            color=CONCURRENCY_COLOURS.get(target),
            linestyle=style["linestyle"],
            marker=style["marker"],
            markerfacecolor=style.get("markerfacecolor"),
            capsize=3,
            label=label,
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({r["writers"] for r in rows}))
    ax.set_xlabel("concurrent writers")
    ax.set_ylabel("posts per second (all writers)")
    ax.set_title("Concurrent posting on the wire server")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def memory_plot(path: Path, rows: list[tuple[str, dict[str, float]]], title: str) -> Path:
    """Peak RSS over baseline, one bar per way of loading the thread, values written."""
    import textwrap

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 1.2 + 0.8 * len(rows)), dpi=110)
    labels = [textwrap.fill(label, 34) for label, _ in rows]
    medians = [s["median"] for _, s in rows]
    below = [s["median"] - s["min"] for _, s in rows]
    above = [s["max"] - s["median"] for _, s in rows]
    bars = ax.barh(labels, medians, xerr=[below, above], capsize=3)
    ax.bar_label(bars, labels=[f"{m:.1f} MiB" for m in medians], padding=6, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max([*medians, 1.0]) * 1.25)
    ax.set_xlabel("peak RSS over the process's baseline (MiB)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
