"""Overflow pages with many processes over the wire (SecantusDB).

With at most 4 messages inline, every other post moves messages to a page, so moves by
one process interleave with appends and moves by the others. Whatever the interleaving,
and wherever a process is killed, the thread holds every acknowledged post once, in
each writer's order; its committed pages are numbered 0.. without a gap; and a page
left by a move that did not commit is ignored by readers and replaced by a later move.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from pymongo import MongoClient

import threadmem_mongo
from threadmem_mongo import RoleMessage, RoleThread, ThreadStore

pytestmark = [pytest.mark.wire, pytest.mark.slow]

Document = dict[str, Any]

LIMIT = 4
WRITERS = 4
POSTS = 24  # per writer
ACKED_BEFORE_KILL = 9
PROCESS_TIMEOUT = 120.0
BARRIER_TIMEOUT = 60.0
#: Commands a client's monitor keeps waiting on the server; not writes.
MONITORING = {"hello", "ismaster", "isMaster"}


# -- child processes (module level, for the spawn start method) ----------------------------------


def _configure(uri: str, database: str, app_name: str | None = None) -> None:
    if app_name is not None:
        uri += ("&" if "?" in uri else "/?") + f"appName={app_name}"
    threadmem_mongo.configure(uri=uri, database=database, timeout=10, max_inline_messages=LIMIT)


def post_from_process(
    uri: str, database: str, thread_id: str, worker: int, barrier: Any, results: Any
) -> None:
    """Post ``POSTS`` messages through one object; report their ids and what it holds."""
    _configure(uri, database)
    report: Document = {"worker": worker, "posted": [], "held": [], "error": None}
    try:
        mine = RoleThread.get(thread_id)
        barrier.wait(timeout=BARRIER_TIMEOUT)
        for i in range(POSTS):
            report["posted"].append(mine.post("user", f"w{worker}-{i}").id)
        mine.refresh()
        report["held"] = [message.id for message in mine.messages()]
    except Exception as exc:  # reported, so the parent shows what went wrong
        report["error"] = f"{type(exc).__name__}: {exc}"
        barrier.abort()
    finally:
        results.put(report)
        threadmem_mongo._config.reset()


def post_until_killed(uri: str, database: str, thread_id: str, acks: Any, app_name: str) -> None:
    """Post forever, acknowledging each post once it has returned."""
    _configure(uri, database, app_name)
    mine = RoleThread.get(thread_id)
    i = 0
    while True:
        acks.put(mine.post("user", f"doomed-{i}").id)
        i += 1


def stop_after_page_write(
    uri: str, database: str, thread_id: str, acks: Any, app_name: str
) -> None:
    """Post until a move has written its page, then wait to be killed before committing."""
    _configure(uri, database, app_name)
    mine = RoleThread.get(thread_id)
    pages = mine.store.pages
    real = pages.write

    def write_then_hang(page: Document) -> bool:
        written = real(page)
        acks.put(("page written", page["n"], written))
        threading.Event().wait()  # never set: the parent kills this process
        return written

    pages.write = write_then_hang  # type: ignore[method-assign]
    i = 0
    while True:
        acks.put(("posted", mine.post("user", f"doomed-{i}").id, True))
        i += 1


# -- helpers ----------------------------------------------------------------------------------


def small_store(wire_store: ThreadStore) -> ThreadStore:
    return ThreadStore(wire_store.collection, max_inline_messages=LIMIT)


def committed_layout(store: ThreadStore, thread_id: str) -> tuple[Document, list[Document]]:
    """The thread document and its pages, checking the committed ones are numbered 0..
    without a gap and hold, with the inline part, every message once."""
    doc = store.collection.find_one({"_id": thread_id})
    assert doc is not None
    page_count = doc.get("page_count", 0)
    pages = list(store.pages.collection.find({"thread_id": thread_id}, sort=[("n", 1)]))
    committed = [page for page in pages if page["n"] < page_count]
    assert [page["n"] for page in committed] == list(range(page_count))
    ids = [m["id"] for page in committed for m in page["messages"]] + [
        m["id"] for m in doc["messages"]
    ]
    assert len(set(ids)) == len(ids)
    assert doc["message_count"] == len(ids)
    assert doc.get("paged_count", 0) == len(ids) - len(doc["messages"])
    assert not doc.get("pending")
    # Every change that landed was a post or a move, each one version.
    assert doc["version"] == len(ids) + page_count
    return doc, pages


def stored_ids(store: ThreadStore, thread_id: str) -> list[str]:
    doc, pages = committed_layout(store, thread_id)
    committed = [page for page in pages if page["n"] < doc.get("page_count", 0)]
    return [m["id"] for page in committed for m in page["messages"]] + [
        m["id"] for m in doc["messages"]
    ]


def read_ids(store: ThreadStore, thread_id: str) -> list[str]:
    """The message ids as readers see them, checked to agree across the ways to read."""
    whole = [m.id for m in RoleThread.get(thread_id, store=store).messages()]
    assert [m.id for m in RoleThread.get(thread_id, last=7, store=store).messages()] == whole[-7:]
    found = [m.id for m in RoleMessage.find(thread_id=thread_id, store=store)]
    assert found == whole
    thread = RoleThread.get(thread_id, last=0, store=store)
    collected: list[str] = []
    page = thread.history(limit=5)
    while page:
        collected = [m.id for m in page] + collected
        page = thread.history(before=page[0].id, limit=5)
    assert collected == whole
    return whole


def run_and_collect(target: Callable[..., None], args: tuple[Any, ...]) -> list[Document]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WRITERS)
    results = context.Queue()
    processes = [
        context.Process(target=target, args=(*args, worker, barrier, results))
        for worker in range(WRITERS)
    ]
    for process in processes:
        process.start()
    reports: list[Document] = []
    try:
        for _ in range(WRITERS):
            reports.append(results.get(timeout=PROCESS_TIMEOUT))
    except queue.Empty:
        pytest.fail(f"only {len(reports)} of {WRITERS} processes reported")
    finally:
        for process in processes:
            process.join(timeout=PROCESS_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join()
        results.close()
        results.join_thread()
    assert [process.exitcode for process in processes] == [0] * WRITERS
    return sorted(reports, key=lambda report: report["worker"])


def kill(process: Any, wire_client: MongoClient[Document], app_name: str) -> None:
    """SIGKILL the process, then wait until the server has finished the command it may
    have sent last: the server runs a command to its end when its client is gone."""
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    process.join(timeout=PROCESS_TIMEOUT)
    assert process.exitcode == -signal.SIGKILL
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while any(
        op.get("clientMetadata", {}).get("application", {}).get("name") == app_name
        and not MONITORING.intersection(op.get("command", {}))
        for op in wire_client.admin.command("currentOp")["inprog"]
    ):
        assert time.monotonic() < deadline, "the server never finished the killed writer's command"
        time.sleep(0.05)


# -- tests -----------------------------------------------------------------------------------


def test_processes_posting_past_the_limit_lose_and_duplicate_nothing(
    wire_uri: str, wire_store: ThreadStore
) -> None:
    store = small_store(wire_store)
    thread = RoleThread(store=store)
    database = store.collection.database.name

    reports = run_and_collect(post_from_process, (wire_uri, database, thread.id))

    assert [report["error"] for report in reports] == [None] * WRITERS
    ids = read_ids(store, thread.id)
    assert ids == stored_ids(store, thread.id)
    assert sorted(ids) == sorted(i for report in reports for i in report["posted"])
    for report in reports:
        assert len(report["posted"]) == POSTS
        assert [i for i in ids if i in set(report["posted"])] == report["posted"]
        # What each process read at its end is the thread as it was then.
        assert report["held"] == ids[: len(report["held"])]
        assert set(report["posted"]) <= set(report["held"])
    doc, pages = committed_layout(store, thread.id)
    assert doc["message_count"] == WRITERS * POSTS
    assert doc["page_count"] >= 1
    assert len(doc["messages"]) >= 1
    texts = [m.text for m in RoleThread.get(thread.id, store=store).messages()]
    for worker in range(WRITERS):
        assert [t for t in texts if t.startswith(f"w{worker}-")] == [
            f"w{worker}-{i}" for i in range(POSTS)
        ]

    # A leftover page from a move that lost its race is replaced by the next moves.
    leftovers = {page["n"]: page for page in pages if page["n"] >= doc["page_count"]}
    survivor = RoleThread.get(thread.id, store=store)
    for i in range(2 * (len(leftovers) + 1)):
        survivor.post("assistant", f"after {i}")
    assert_leftovers_replaced(store, thread.id, leftovers)
    # However far concurrent posts outran the moves, a writer alone brings the thread
    # back within its limits.
    doc, _ = committed_layout(store, thread.id)
    assert len(doc["messages"]) <= LIMIT


def assert_leftovers_replaced(
    store: ThreadStore, thread_id: str, leftovers: dict[int, Document]
) -> None:
    doc, pages = committed_layout(store, thread_id)
    by_number = {page["n"]: page for page in pages}
    for n, leftover in leftovers.items():
        assert n < doc["page_count"]
        assert by_number[n]["version"] > leftover["version"]
        assert by_number[n]["written_at"] > leftover["written_at"]


def test_a_writer_killed_while_posting_leaves_a_consistent_thread(
    wire_uri: str, wire_store: ThreadStore, wire_client: MongoClient[Document]
) -> None:
    store = small_store(wire_store)
    thread = RoleThread(store=store)
    app_name = f"overflow-killed-{uuid.uuid4().hex[:12]}"
    for i in range(3):
        thread.post("user", f"before {i}")
    context = multiprocessing.get_context("spawn")
    acks = context.Queue()
    writer = context.Process(
        target=post_until_killed,
        args=(wire_uri, store.collection.database.name, thread.id, acks, app_name),
    )
    writer.start()
    acked: list[str] = []
    try:
        while len(acked) < ACKED_BEFORE_KILL:
            acked.append(acks.get(timeout=PROCESS_TIMEOUT))
    finally:
        kill(writer, wire_client, app_name)
    while True:  # acknowledgements sent before the kill
        try:
            acked.append(acks.get_nowait())
        except queue.Empty:
            break
    acks.close()

    ids = read_ids(store, thread.id)
    assert ids == stored_ids(store, thread.id)
    for message_id in acked:
        assert ids.count(message_id) == 1
    assert [i for i in ids if i in set(acked)] == acked
    # At most the post under way when it was killed landed without an acknowledgement.
    assert len(ids) - 3 - len(acked) in (0, 1)
    doc, pages = committed_layout(store, thread.id)
    leftovers = {page["n"]: page for page in pages if page["n"] >= doc["page_count"]}

    survivor = RoleThread.get(thread.id, store=store)
    after = [survivor.post("assistant", f"after {i}").id for i in range(8)]

    final = read_ids(store, thread.id)
    assert final == [*ids, *after]
    assert final == stored_ids(store, thread.id)
    assert_leftovers_replaced(store, thread.id, leftovers)


def test_a_writer_killed_between_its_page_write_and_the_commit_leaves_an_ignored_page(
    wire_uri: str, wire_store: ThreadStore, wire_client: MongoClient[Document]
) -> None:
    store = small_store(wire_store)
    thread = RoleThread(store=store)
    app_name = f"overflow-killed-{uuid.uuid4().hex[:12]}"
    context = multiprocessing.get_context("spawn")
    acks = context.Queue()
    writer = context.Process(
        target=stop_after_page_write,
        args=(wire_uri, store.collection.database.name, thread.id, acks, app_name),
    )
    writer.start()
    acked: list[str] = []
    try:
        while True:
            kind, value, written = acks.get(timeout=PROCESS_TIMEOUT)
            if kind == "page written":
                break
            acked.append(value)
    finally:
        kill(writer, wire_client, app_name)
    acks.close()

    assert (value, written) == (0, True)
    assert len(acked) == LIMIT  # the post that took it past the limit was not acknowledged
    doc, pages = committed_layout(store, thread.id)
    assert doc.get("page_count", 0) == 0
    assert [page["n"] for page in pages] == [0]
    ids = read_ids(store, thread.id)
    assert ids[:LIMIT] == acked
    assert len(ids) == LIMIT + 1  # its append landed before the move
    assert len(RoleMessage.find(id=acked[0], store=store)) == 1

    survivor = RoleThread.get(thread.id, store=store)
    after = [survivor.post("assistant", f"after {i}").id for i in range(3)]

    assert read_ids(store, thread.id) == [*ids, *after]
    assert_leftovers_replaced(store, thread.id, {0: pages[0]})
