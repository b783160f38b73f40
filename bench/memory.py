"""Section 7: peak RSS of a fresh process that loads one long thread, whole or its tail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import bson

from bench import plots
from bench.markdown import plain, table
from bench.measure import summary
from bench.page import Page, measured
from bench.plan import Plan, prefill_messages
from bench.targets import DATABASE, Target, has_last
from threadmem_mongo import RoleThread

COLLECTION = "memory"
ROOT = Path(__file__).resolve().parent.parent

MODES = (
    ("baseline", "imports and a connection, nothing loaded"),
    ("whole", "`RoleThread.get(id)`: the whole thread"),
    ("last", "`RoleThread.get(id, last=20)`"),
    ("raw-whole", "raw pymongo `find_one` of the whole document (reference)"),
    ("raw-slice", "raw pymongo `find_one` with `$slice: -20` (reference)"),
)


def _child(uri: str, thread_id: str, mode: str) -> dict[str, Any]:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.memory_child",
            "--uri",
            uri,
            "--database",
            DATABASE,
            "--collection",
            COLLECTION,
            "--thread-id",
            thread_id,
            "--mode",
            mode,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"memory child ({mode}) failed: {completed.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def memory(uri: str, target: Target, plan: Plan) -> dict[str, Any]:
    store = target.store(COLLECTION)
    thread = RoleThread.from_openai(prefill_messages(plan.memory_length), store=store)
    document = target.collection(COLLECTION).find_one({"_id": thread.id})
    size = len(bson.encode(document)) if document is not None else 0
    rows: list[dict[str, Any]] = []
    for mode, label in MODES:
        if mode == "last" and not has_last():
            rows.append(
                {
                    "mode": mode,
                    "label": label,
                    "not_available": "`RoleThread.get` has no `last=` yet",
                }
            )
            continue
        runs = [_child(uri, thread.id, mode) for _ in range(plan.memory_reps)]
        rows.append(
            {
                "mode": mode,
                "label": label,
                "messages": runs[0]["messages"],
                "peak_mib": summary([r["peak_kib"] / 1024 for r in runs]),
                "over_baseline_mib": summary(
                    [(r["peak_kib"] - r["baseline_kib"]) / 1024 for r in runs]
                ),
            }
        )
    return {"length": plan.memory_length, "document_bytes": size, "rows": rows}


# -- the page -------------------------------------------------------------------------------


@measured("## 7. Memory", "memory", "Memory")
def render(page: Page, section: dict[str, Any]) -> list[str]:
    """Section 7: peak RSS per way of loading the thread, and its bar plot."""
    lines = [
        f"Peak resident set size of a fresh Python process that connects to the wire "
        f"server and loads one thread of {section['length']:,} messages "
        f"({section['document_bytes']:,} bytes of BSON). *Over baseline* is the peak "
        "during the load minus the RSS just before it (on Linux the kernel's peak is "
        "reset first, so import-time peaks do not hide it). "
        f"{page.plan['memory_reps']} run(s) each.",
        "",
    ]
    rows = []
    bars = []
    for row in section["rows"]:
        if row.get("not_available"):
            rows.append([row["label"], "—", "—", f"not available: {row['not_available']}"])
            continue
        rows.append(
            [
                row["label"],
                f"{row['messages']:,}",
                plain(row["peak_mib"]),
                plain(row["over_baseline_mib"]),
            ]
        )
        if row["mode"] != "baseline":
            bars.append((row["label"].replace("`", ""), row["over_baseline_mib"]))
    lines += table(["Load", "Messages loaded", "Peak RSS (MiB)", "Over baseline (MiB)"], rows)
    if bars:
        title = f"Loading a {section['length']:,}-message thread in a fresh process"
        lines.append(
            page.plot("bench-memory.png", lambda path: plots.memory_plot(path, bars, title))
        )
    return lines
