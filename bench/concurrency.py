"""Section 6: concurrent writers (threads, and processes) posting to one thread or to a
thread each: throughput, conflicts, re-reads, and messages lost (read back to check).

Each writer holds its own ``RoleThread`` object loaded by id, as separate request
handlers or workers do. Appends never conflict; a writer whose object is behind the
store reads what came after its last message (one ``aggregate``) when only appends
happened, and the whole thread (``find``) otherwise; the table counts both.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any

from pymongo import MongoClient

from bench import plots
from bench.markdown import DASH, plain, reason, table
from bench.measure import CommandLog, summary
from bench.page import Page, measured
from bench.plan import TEXT, Plan
from bench.targets import DATABASE
from threadmem_mongo import RoleThread, ThreadStore, VersionConflictError

COLLECTION = "concurrency"
RESULT_TIMEOUT = 300.0


def run_writer(
    store: ThreadStore, log: CommandLog, thread_id: str, writer: int, count: int, barrier: Any
) -> dict[str, Any]:
    """Post ``count`` messages tagged ``{"writer", "seq"}``; return what happened."""
    thread = RoleThread.get(thread_id, store=store)
    barrier.wait()
    acked: list[str] = []
    conflicts = errors = 0
    last_error = ""
    with log.window() as window:
        start = time.monotonic()
        for seq in range(count):
            try:
                message = thread.post("user", TEXT, metadata={"writer": writer, "seq": seq})
                acked.append(message.id)
            except VersionConflictError:
                conflicts += 1
            except Exception as exc:  # counted and reported, never hidden
                errors += 1
                last_error = repr(exc)
        end = time.monotonic()
    return {
        "writer": writer,
        "start": start,
        "end": end,
        "acked": acked,
        "conflicts": conflicts,
        "errors": errors,
        "last_error": last_error,
        "catch_ups": sum(1 for name in window.commands if name == "aggregate"),
        "rereads": sum(1 for name in window.commands if name == "find"),
        "round_trips": window.round_trips,
    }


def _process_writer(
    uri: str, thread_id: str, writer: int, count: int, barrier: Any, results: Any
) -> None:
    log = CommandLog()
    client: MongoClient[dict[str, Any]] = MongoClient(uri, event_listeners=[log])
    try:
        store = ThreadStore(client[DATABASE][COLLECTION])
        results.put(run_writer(store, log, thread_id, writer, count, barrier))
    except BaseException as exc:
        results.put({"writer": writer, "crashed": repr(exc)})
    finally:
        client.close()


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["bench.concurrency"])
        return context
    return multiprocessing.get_context("spawn")


def _run_cell(
    uri: str,
    store: ThreadStore,
    log: CommandLog,
    mode: str,
    writers: int,
    target: str,
    count: int,
) -> dict[str, Any]:
    owner = f"conc-{mode}-{target}-{writers}"
    if target == "one":
        ids = [RoleThread(owner_id=owner, store=store).id] * writers
    else:
        ids = [RoleThread(owner_id=owner, store=store).id for _ in range(writers)]
    results: list[dict[str, Any]] = []
    if mode == "threads":
        barrier = threading.Barrier(writers)
        lock = threading.Lock()

        def work(index: int) -> None:
            result = run_writer(store, log, ids[index], index, count, barrier)
            with lock:
                results.append(result)

        workers = [threading.Thread(target=work, args=(i,)) for i in range(writers)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    else:
        context = _context()
        process_barrier = context.Barrier(writers)
        queue = context.Queue()
        processes = [
            context.Process(
                target=_process_writer, args=(uri, ids[i], i, count, process_barrier, queue)
            )
            for i in range(writers)
        ]
        for process in processes:
            process.start()
        for _ in processes:
            results.append(queue.get(timeout=RESULT_TIMEOUT))
        for process in processes:
            process.join(timeout=RESULT_TIMEOUT)
    crashed = [r["crashed"] for r in results if "crashed" in r]
    if crashed:
        raise RuntimeError(f"a writer process failed: {crashed[0]}")
    return _verify(store, results, sorted(set(ids)), writers, count)


def _verify(
    store: ThreadStore,
    results: list[dict[str, Any]],
    thread_ids: list[str],
    writers: int,
    count: int,
) -> dict[str, Any]:
    """Read every thread back and compare with what the writers were told."""
    stored_ids: list[str] = []
    stored_tags: list[tuple[int, int]] = []
    for thread_id in thread_ids:
        for message in RoleThread.get(thread_id, store=store).messages():
            stored_ids.append(message.id)
            meta = message.metadata or {}
            stored_tags.append((int(meta["writer"]), int(meta["seq"])))
    acked = {message_id for r in results for message_id in r["acked"]}
    expected = {(w, s) for w in range(writers) for s in range(count)}
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    posted = sum(len(r["acked"]) for r in results)
    return {
        "wall": wall,
        "throughput": posted / wall if wall > 0 else 0.0,
        "posted": posted,
        "conflicts": sum(r["conflicts"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "last_error": next((r["last_error"] for r in results if r["last_error"]), ""),
        "catch_ups": sum(r["catch_ups"] for r in results),
        "rereads": sum(r["rereads"] for r in results),
        "round_trips": sum(r["round_trips"] for r in results),
        "lost": len(acked - set(stored_ids)),
        "missing": len(expected - set(stored_tags)),
        "duplicates": len(stored_ids)
        - len(set(stored_ids))
        + len(stored_tags)
        - len(set(stored_tags)),
    }


def concurrency(uri: str, plan: Plan) -> dict[str, Any]:
    log = CommandLog()
    client: MongoClient[dict[str, Any]] = MongoClient(uri, event_listeners=[log])
    store = ThreadStore(client[DATABASE][COLLECTION])
    store.ensure_indexes()
    keys = [
        (mode, target, writers)
        for mode in ("threads", "processes")
        for target in ("one", "separate")
        for writers in plan.writers
    ]
    cells: dict[tuple[str, str, int], list[dict[str, Any]]] = {key: [] for key in keys}
    rows: list[dict[str, Any]] = []
    try:
        # Repetitions are the outer loop, so a busy moment of the machine touches one
        # repetition of many cells rather than every repetition of one.
        for _rep in range(plan.concurrency_reps):
            for mode, target, writers in keys:
                cells[(mode, target, writers)].append(
                    _run_cell(uri, store, log, mode, writers, target, plan.posts_per_writer)
                )
        for (mode, target, writers), runs in cells.items():
            rows.append(
                {
                    "mode": mode,
                    "target": target,
                    "writers": writers,
                    "posts": sum(c["posted"] for c in runs),
                    "attempted": writers * plan.posts_per_writer * len(runs),
                    "throughput": summary([c["throughput"] for c in runs]),
                    "conflicts": sum(c["conflicts"] for c in runs),
                    "errors": sum(c["errors"] for c in runs),
                    "last_error": next((c["last_error"] for c in runs if c["last_error"]), ""),
                    "catch_ups": sum(c["catch_ups"] for c in runs),
                    "rereads": sum(c["rereads"] for c in runs),
                    "round_trips": sum(c["round_trips"] for c in runs),
                    "lost": sum(c["lost"] for c in runs),
                    "missing": sum(c["missing"] for c in runs),
                    "duplicates": sum(c["duplicates"] for c in runs),
                }
            )
    finally:
        client.close()
    return {
        "posts_per_writer": plan.posts_per_writer,
        "reps": plan.concurrency_reps,
        "start_method": _context().get_start_method(),
        "rows": rows,
    }


# -- the page -------------------------------------------------------------------------------


def headline(page: Page) -> str | None:
    """The headline's line: messages lost over every cell, or None if it did not run."""
    section = page.sections.get("concurrency")
    if section is None or reason(section):
        return None
    posts = sum(r["posts"] for r in section["rows"])
    lost = sum(r["lost"] + r["missing"] for r in section["rows"])
    return (
        f"- **Concurrent writers**: {lost} messages lost out of {posts:,} posted by "
        f"1{DASH}{max(page.plan['writers'])} writers (threads and processes), checked "
        "by reading every thread back."
    )


@measured("## 6. Concurrency", "concurrency", "Concurrency")
def render(page: Page, section: dict[str, Any]) -> list[str]:
    """Section 6: a row per cell (writers as, target, writers), errors, and the plot."""
    most = max(page.plan["writers"])
    lines = [
        f"1{DASH}{most} writers, as threads of one process (sharing one "
        f"`MongoClient`) and as processes (`{section['start_method']}`), each posting "
        f"{section['posts_per_writer']} messages either to one shared thread or to a thread "
        f"of its own, on the wire server; {section['reps']} repetition(s) per cell. Each "
        "writer loads its own `RoleThread` object by id, as separate request handlers do. "
        "Afterwards every thread is read back: *lost* counts acknowledged posts that are "
        "not stored, *missing* counts attempted posts not stored, *duplicates* counts "
        "messages stored twice. *Conflicts* are `VersionConflictError`s raised (appends "
        "never conflict). When a writer's object was behind the store (another writer had "
        "appended), its post reads what it missed: *catch-ups* count the reads of only the "
        "messages after the object's last one (only appends had happened), *re-reads* the "
        "reads of the whole thread (anything else had changed). *Round trips per post* "
        "counts every command a writer sent while posting. *vs 1 writer* divides the "
        "throughput by that of one writer in the same setting. Repetitions go round all "
        "the cells in turn. The server answers from one process on a machine of "
        f"{page.meta['cpu_count']} CPUs shared with the writers, so more writers add "
        "no throughput here; what the rows compare is the cost per post.",
        "",
    ]
    single = {
        (r["mode"], r["target"]): r["throughput"]["median"]
        for r in section["rows"]
        if r["writers"] == 1
    }

    def speedup(row: dict[str, Any]) -> str:
        base = single.get((row["mode"], row["target"]))
        return f"{row['throughput']['median'] / base:.2f}x" if base else "—"

    rows = []
    for row in section["rows"]:
        rows.append(
            [
                row["mode"],
                "one shared thread" if row["target"] == "one" else "a thread each",
                row["writers"],
                f"{row['posts']:,} / {row['attempted']:,}",
                plain(row["throughput"], 0),
                speedup(row),
                f"{row['round_trips'] / max(row['posts'], 1):.2f}" if "round_trips" in row else "—",
                row["conflicts"],
                row.get("catch_ups", "—"),
                row["rereads"],
                row["lost"],
                row["missing"],
                row["duplicates"],
            ]
        )
    lines += table(
        [
            "Writers as",
            "Target",
            "Writers",
            "Posted / attempted",
            "Posts per second",
            "vs 1 writer",
            "Round trips per post",
            "Conflicts",
            "Catch-ups",
            "Re-reads",
            "Lost",
            "Missing",
            "Duplicates",
        ],
        rows,
    )
    errors = [r for r in section["rows"] if r["errors"]]
    for row in errors:
        lines.append(
            f"- {row['mode']}, {row['writers']} writers: {row['errors']} errors, "
            f"last: `{row['last_error']}`"
        )
    if errors:
        lines.append("")
    lines.append(
        page.plot(
            "bench-concurrency.png", lambda path: plots.concurrency_plot(path, section["rows"])
        )
    )
    return lines
