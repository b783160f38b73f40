"""Section 2: the original ``threadmem`` 0.2.39 on its default SQLite, in its own venv.

Its driver answers commands line by line, so the harness can alternate a batch of the
original's posts with a batch of its own (on the wire server, at the same thread
length) and take a paired ratio per repetition, as it does against the raw floor.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench.measure import summary
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
