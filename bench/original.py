"""Section 2: the original ``threadmem`` 0.2.39 on its default SQLite, in its own venv.

Measured and rendered here; its table also shows threadmem-mongo's workloads from
``bench.ours``.

Its driver answers commands line by line, so the harness can alternate a batch of the
original's posts with a batch of its own (on the wire server, at the same thread
length) and take a paired ratio per repetition, as it does against the raw floor.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench import ours
from bench.markdown import Stats, lat, quotient, reason, rows_by_length, seconds, table, times
from bench.measure import summary
from bench.page import Page, measured
from bench.plan import TEXT, Plan, prefill_messages
from bench.targets import Target, post
from bench.venvs import LineDriver, ensure_venv
from threadmem_mongo import RoleThread

REQUIREMENT = "threadmem==0.2.39"
VENV = "venv-threadmem"
COLLECTION = "versus_original"


def original(plan: Plan, target: Target) -> dict[str, Any]:
    """Build (or reuse) the venv, run the original's workloads, then the paired posts.

    Raises:
        NotRunError: The venv could not be built or the driver failed.
    """
    python = ensure_venv(VENV, [REQUIREMENT], ["threadmem"])
    config = {
        "text": TEXT,
        "reps": plan.reps,
        "posts_per_rep": plan.posts_per_rep,
        "lengths": list(plan.lengths),
        "post_n": list(plan.post_n),
        "post_n_reps": plan.post_n_reps,
    }
    with tempfile.TemporaryDirectory(prefix="threadmem-bench-sqlite-") as home:
        env = {
            "AGENTSEA_HOME": home,
            "AGENTSEA_DB_DIR": f"{home}/data",
            "THREADS_DB_NAME": "threads.db",
            "DB_TYPE": "sqlite",
            "AGENTSEA_DB_TEST": "false",
        }
        with LineDriver(python, "bench.drivers.original", config, env=env) as driver:
            result = driver.call({"op": "workloads"})
            result["paired"] = _paired_posts(driver, plan, target)
    result["python"] = str(python).replace(str(Path.home()), "~")
    return result


def _paired_posts(driver: LineDriver, plan: Plan, target: Target) -> list[dict[str, Any]]:
    """Per thread length: batches of posts, the original's and ours in turn."""
    store = target.store(COLLECTION)
    rows = []
    count = plan.posts_per_rep
    for length in plan.lengths:
        driver.call({"op": "prepare", "length": length})
        thread = RoleThread.from_openai(prefill_messages(length), owner_id="bench", store=store)
        post(thread)  # warm
        theirs: list[float] = []
        ours: list[float] = []
        ratios: list[float] = []
        for rep in range(plan.reps):
            order = ("theirs", "ours") if rep % 2 == 0 else ("ours", "theirs")
            seconds: dict[str, float] = {}
            for side in order:
                if side == "theirs":
                    answer = driver.call({"op": "posts", "length": length, "count": count})
                    seconds[side] = float(answer["seconds"])
                else:
                    start = time.perf_counter()
                    for _ in range(count):
                        post(thread)
                    seconds[side] = time.perf_counter() - start
            theirs.append(seconds["theirs"] / count)
            ours.append(seconds["ours"] / count)
            ratios.append(seconds["ours"] / seconds["theirs"])
        rows.append(
            {
                "length": length,
                "original": summary(theirs),
                "ours": summary(ours),
                "ratio": summary(ratios),
            }
        )
    return rows


# -- the page -------------------------------------------------------------------------------


def paired_posts(page: Page) -> dict[int, dict[str, Any]]:
    """The paired posts (ours and the original's, in turn), by thread length."""
    section = page.sections.get("original")
    if not section or reason(section):
        return {}
    return {row["length"]: row for row in section.get("paired", [])}


def versions(page: Page) -> str:
    """The machine table's cell: the original's packages, or why it did not run."""
    section = page.sections.get("original") or {}
    if reason(section):
        return reason(section) or ""
    found = section.get("versions", {})
    return ", ".join(f"{k} {v}" for k, v in found.items()) + " (own venv)"


def headline(page: Page) -> str:
    """The headline's line: one paired post against the original's."""
    return f"- **Post vs the original threadmem 0.2.39 (SQLite)**: {_versus(page)}."


def _versus(page: Page) -> str:
    why = reason(page.sections.get("original"))
    if why:
        return why
    paired = paired_posts(page)
    lengths = sorted(paired)
    if not lengths:
        return "no data"
    length = 1000 if 1000 in lengths else lengths[-1]
    row = paired[length]
    mock = ours.post_rows(page, "post_cost_mongomock").get(length, {}).get("post")
    text = (
        f"at {length:,} messages one post takes {seconds(row['ours']['median'])} here on "
        f"SecantusDB against {seconds(row['original']['median'])} for the original on "
        f"SQLite, batches of each in turn: ratio {times(row['ratio'])} "
        "(paired; below 1 = threadmem-mongo faster)"
    )
    if mock:
        text += (
            f"; on mongomock {seconds(mock['median'])}, "
            f"{quotient(mock, row['original'])} of the original"
        )
    return text


@measured("## 2. The original threadmem 0.2.39 (SQLite)", "original", "Original threadmem 0.2.39")
def render(page: Page, section: dict[str, Any]) -> list[str]:
    """Section 2: the original's workloads beside ours on the wire and on mongomock."""
    lines = [
        "The original stores a thread as SQLAlchemy rows in its default SQLite file "
        "(pointed at a temporary directory through `AGENTSEA_HOME`/`AGENTSEA_DB_DIR`). "
        "Its `post` appends to the in-memory list and saves the whole thread "
        "(`session.merge` of the thread and every message), so its cost grows with the "
        "thread. Same workloads, same run. For one post at a given length, batches of "
        f"{page.plan['posts_per_rep']} posts of the original and of threadmem-mongo (on the "
        "wire server) alternate, each pair giving one ratio (*paired*); the other rows "
        "divide medians. Below 1 = threadmem-mongo faster.",
        "",
    ]
    wire, mock = ours.post_rows(page, "post_cost_wire"), ours.post_rows(page, "post_cost_mongomock")
    wire_work = page.sections.get("workloads_wire") or {}
    mock_work = page.sections.get("workloads_mongomock") or {}
    rows: list[list[str]] = []

    def add(
        label: str,
        theirs: Stats | None,
        on_wire: Stats | None,
        on_mock: Stats | None,
        paired: Stats | None = None,
    ) -> None:
        ratio = f"{times(paired)} paired" if paired else quotient(on_wire, theirs)
        rows.append([label, lat(theirs), lat(on_wire), lat(on_mock), ratio])

    add("create a thread", section.get("create"), wire_work.get("create"), mock_work.get("create"))
    wire_n = {r["count"]: r["total"] for r in wire_work.get("post_n", [])}
    mock_n = {r["count"]: r["total"] for r in mock_work.get("post_n", [])}
    for item in section.get("post_n", []):
        n = item["count"]
        add(
            f"post {n:,} messages into a new thread (total)",
            item["total"],
            wire_n.get(n),
            mock_n.get(n),
        )
    for length, row in sorted(paired_posts(page).items()):
        add(
            f"one post at {length:,} messages",
            row["original"],
            row["ours"],
            mock.get(length, {}).get("post"),
            row["ratio"],
        )
    for label, theirs, mine in (
        ("find by id at {:,} messages (`find(id=)` / `get`)", "find", "get"),
        ("`to_openai()` of {:,} messages", "to_openai", "to_openai"),
    ):
        for length, row in sorted(rows_by_length(section).items()):
            add(
                label.format(length),
                row[theirs],
                wire.get(length, {}).get(mine),
                mock.get(length, {}).get(mine),
            )
    lines += table(
        [
            "Workload",
            "Original (SQLite)",
            "threadmem-mongo (SecantusDB)",
            "threadmem-mongo (mongomock)",
            "SecantusDB ÷ original",
        ],
        rows,
    )
    plan = page.plan
    if plan["mode"] == "full" and 5000 in plan["lengths"]:
        lines += [
            '"Post N into a new thread" stops at '
            f"{max(plan['post_n']):,}: posting 5,000 messages one by one into the "
            "original takes over ten minutes (each post rewrites the thread), which does "
            "not fit the run; the 5,000-message figures above are per post into a "
            "prefilled thread.",
            "",
        ]
    return lines
