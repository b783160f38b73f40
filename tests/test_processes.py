"""Many processes creating and editing threads over the wire (SecantusDB).

Posts from every process land once and in each process's order; edits based on what a
process read land only if nobody changed the thread since, and otherwise raise
VersionConflictError and write nothing, so a stale edit never overwrites a newer one.
(tests/test_concurrency.py covers many processes posting to one thread.)
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable
from typing import Any

import pytest

import threadmem_mongo
from threadmem_mongo import RoleThread, ThreadStore, VersionConflictError

pytestmark = [pytest.mark.wire, pytest.mark.slow]

Document = dict[str, Any]
Report = dict[str, Any]

WORKERS = 4
ROUNDS = WORKERS  # each process leads one round of the stale-edit game
POSTS = 6  # per process and thread in the free-running phase
EDIT_ATTEMPTS = 200
PROCESS_TIMEOUT = 90.0
BARRIER_TIMEOUT = 60.0


# -- child processes (module level, for the spawn start method) ----------------------------------


def _retry_on_conflict(thread: RoleThread, change: Callable[[RoleThread], object]) -> int:
    """Apply ``change`` until it commits, re-reading after each conflict; return conflicts."""
    for attempt in range(EDIT_ATTEMPTS):
        try:
            change(thread)
            return attempt
        except VersionConflictError:
            thread.refresh()
    raise AssertionError(f"no edit landed in {EDIT_ATTEMPTS} attempts")


def _stale_edits(
    shared_id: str, first_message_id: str, worker: int, barrier: Any, report: Report
) -> None:
    """Each round every process reads the shared thread; the round's leader changes it;
    then every other process tries to save its stale copy."""
    for round_ in range(ROUNDS):
        mine = RoleThread.get(shared_id)
        barrier.wait(timeout=BARRIER_TIMEOUT)
        leads = round_ % WORKERS == worker
        if leads:
            label = f"round {round_} by {worker}"
            mine.post("assistant", label)
            mine.name = label
            mine.save()
            mine.update_message(first_message_id, text=f"edited in {label}")
            report["led"].append(round_)
        barrier.wait(timeout=BARRIER_TIMEOUT)
        if not leads:
            mine.name = f"stale {round_} by {worker}"
            try:
                mine.save()
                report["stale_landed"].append(["save", round_])
            except VersionConflictError:
                report["stale_raised"].append(["save", round_])
            try:
                mine.update_message(first_message_id, text=f"stale {round_} by {worker}")
                report["stale_landed"].append(["update_message", round_])
            except VersionConflictError:
                report["stale_raised"].append(["update_message", round_])
        barrier.wait(timeout=BARRIER_TIMEOUT)


def _free_running_edits(worker: int, barrier: Any, report: Report) -> None:
    """Create one's own thread and find the others' by owner; post to every thread;
    rename one's own thread and edit one's own messages, re-reading after conflicts with
    the posts of the others."""
    own = RoleThread(owner_id=f"w{worker}", name=f"w{worker} start")
    report["own_id"] = own.id
    barrier.wait(timeout=BARRIER_TIMEOUT)
    found = [RoleThread.find(owner_id=f"w{w}", last=0) for w in range(WORKERS)]
    assert [len(threads) for threads in found] == [1] * WORKERS, "not one thread per owner"
    thread_ids = [threads[0].id for threads in found]
    objects = {thread_id: RoleThread.get(thread_id) for thread_id in thread_ids}
    objects[own.id] = own
    order = thread_ids[worker:] + thread_ids[:worker]
    barrier.wait(timeout=BARRIER_TIMEOUT)
    for k in range(POSTS):
        for thread_id in order:
            message = objects[thread_id].post("user", f"w{worker}-{k}")
            report["posted"].setdefault(thread_id, []).append(message.id)
        if k % 2 == 1:
            name = f"w{worker} name {k}"

            def rename(thread: RoleThread, name: str = name) -> None:
                thread.name = name
                thread.save()

            report["conflicts"] += _retry_on_conflict(own, rename)
            report["saves"] += 1
            message_id = report["posted"][own.id][k]

            def edit(thread: RoleThread, message_id: str = message_id, k: int = k) -> None:
                thread.update_message(message_id, text=f"w{worker}-{k} edited")

            report["conflicts"] += _retry_on_conflict(own, edit)
            report["edits"].append(message_id)
            report["name"] = name


def edit_from_process(
    uri: str,
    database: str,
    shared_id: str,
    first_message_id: str,
    worker: int,
    barrier: Any,
    results: Any,
) -> None:
    """Child process: play the stale-edit game, then edit freely; report what happened."""
    report: Report = {
        "worker": worker,
        "own_id": None,
        "led": [],
        "stale_raised": [],
        "stale_landed": [],
        "posted": {},
        "saves": 0,
        "edits": [],
        "conflicts": 0,
        "name": None,
        "error": None,
    }
    threadmem_mongo.configure(uri=uri, database=database, timeout=10)
    try:
        barrier.wait(timeout=BARRIER_TIMEOUT)
        _stale_edits(shared_id, first_message_id, worker, barrier, report)
        _free_running_edits(worker, barrier, report)
    except Exception as exc:  # reported, so the parent shows what went wrong
        report["error"] = f"{type(exc).__name__}: {exc}"
        barrier.abort()
    finally:
        results.put(report)
        threadmem_mongo._config.reset()


# -- the test -------------------------------------------------------------------------------------


def run_processes(uri: str, database: str, shared_id: str, first_message_id: str) -> list[Report]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    results = context.Queue()
    processes = [
        context.Process(
            target=edit_from_process,
            args=(uri, database, shared_id, first_message_id, worker, barrier, results),
        )
        for worker in range(WORKERS)
    ]
    for process in processes:
        process.start()
    reports: list[Report] = []
    try:
        for _ in range(WORKERS):
            reports.append(results.get(timeout=PROCESS_TIMEOUT))
    except queue.Empty:
        pytest.fail(f"only {len(reports)} of {WORKERS} processes reported")
    finally:
        for process in processes:
            process.join(timeout=PROCESS_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join()
        results.close()
        results.join_thread()
    assert [process.exitcode for process in processes] == [0] * WORKERS
    return sorted(reports, key=lambda report: int(report["worker"]))


def stored(store: ThreadStore, thread_id: str) -> Document:
    doc = store.collection.find_one({"_id": thread_id})
    assert doc is not None
    return doc


def test_processes_editing_threads_land_every_change_once_and_stale_edits_write_nothing(
    wire_uri: str, wire_store: ThreadStore
) -> None:
    shared = RoleThread(owner_id="everyone", name="shared", store=wire_store)
    first = shared.post("user", "the message everyone edits")

    reports = run_processes(wire_uri, wire_store.collection.database.name, shared.id, first.id)
    assert [report["error"] for report in reports] == [None] * WORKERS
    thread_ids = [report["own_id"] for report in reports]

    # The stale-edit game: every stale save and edit raised, and none of them wrote.
    for report in reports:
        worker = report["worker"]
        others = [r for r in range(ROUNDS) if r % WORKERS != worker]
        assert report["led"] == [r for r in range(ROUNDS) if r % WORKERS == worker]
        assert report["stale_landed"] == [], f"process {worker}: a stale edit landed"
        assert report["stale_raised"] == [
            [kind, r] for r in others for kind in ("save", "update_message")
        ]
    doc = stored(wire_store, shared.id)
    last = f"round {ROUNDS - 1} by {(ROUNDS - 1) % WORKERS}"
    assert doc["name"] == last
    assert [m["text"] for m in doc["messages"]] == [
        f"edited in {last}",
        *[f"round {r} by {r % WORKERS}" for r in range(ROUNDS)],
    ]
    assert doc["version"] == 1 + 3 * ROUNDS  # the first post, then 3 changes a round
    assert doc["message_count"] == len(doc["messages"])

    # The free-running phase: every post once, in each process's order; every rename
    # and edit counted once in the version; the owner's last name and edits kept.
    for owner, thread_id in enumerate(thread_ids):
        doc = stored(wire_store, thread_id)
        messages = doc["messages"]
        ids = [m["id"] for m in messages]
        assert len(ids) == len(set(ids)) == WORKERS * POSTS
        edited = set(reports[owner]["edits"])
        for report in reports:
            worker = report["worker"]
            own_ids = [i for i in ids if i in set(report["posted"][thread_id])]
            assert own_ids == report["posted"][thread_id], f"process {worker}'s order changed"
            texts = [m["text"] for m in messages if m["id"] in set(own_ids)]
            assert texts == [
                f"w{worker}-{k}" + (" edited" if own_ids[k] in edited else "") for k in range(POSTS)
            ]
        owner_report = reports[owner]
        assert len(edited) == owner_report["saves"] == POSTS // 2
        assert doc["version"] == WORKERS * POSTS + owner_report["saves"] + len(edited)
        assert doc["message_count"] == len(messages)
        assert doc["name"] == owner_report["name"] == f"w{owner} name {POSTS - 1}"
        assert doc["owner_id"] == f"w{owner}"
