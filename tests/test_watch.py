"""Live subscriptions: ``watch()`` and ``watch_all()`` over change streams, on the wire.

SecantusDB runs as a single-node replica set, so it has change streams. Every watch here
is bounded by ``idle_timeout`` (and the tests break out on their last expected event);
nothing waits by sleeping: watchers signal what they saw, and writers wait on that with a
deadline. Tests that need their own server (a restart, a standalone server) start one on
a free port and stop it before they end.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import io
import multiprocessing
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any

import mongomock
import pytest
from PIL import Image
from pymongo import AsyncMongoClient, MongoClient, monitoring
from servers import SecantusServer

import threadmem_mongo
from threadmem_mongo import (
    ConfigurationError,
    MessageNotFoundError,
    RoleThread,
    ThreadStore,
    V1Role,
)
from threadmem_mongo._events import ThreadEvent
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore

pytestmark = pytest.mark.wire

Document = dict[str, Any]

ROOT = Path(__file__).resolve().parent.parent
URL = "https://example.com/cat.png"
#: Safety bound of every watch: tests break out on their last expected event long before.
IDLE = 15.0
#: How long a test waits for a watcher to report something.
DEADLINE = 20.0
PROCESS_POSTS = 12
START_TIMEOUT = 20.0


def role(name: str) -> V1Role:
    return V1Role(name=name, user_id=f"id-{name}", user_name=name.title(), icon="")


def big_png_data_uri() -> str:
    """A PNG data URI over the 32 KiB GridFS threshold (random pixels do not compress)."""
    image = Image.frombytes("RGB", (128, 128), random.Random(3).randbytes(128 * 128 * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def added_texts(events: Iterable[ThreadEvent]) -> list[str]:
    return [e.message.text for e in events if e.kind == "message_added" and e.message]


# -- a watcher running in a thread ----------------------------------------------------------


class Watcher:
    """Iterates ``events`` in a background thread until ``until(event)`` is true.

    The iterator is closed at the end (as a ``for`` loop that breaks would let it be),
    and any error it raised is re-raised by :meth:`join`.
    """

    def __init__(
        self, events: Generator[ThreadEvent, None, None], until: Callable[[ThreadEvent], bool]
    ) -> None:
        self.events: list[ThreadEvent] = []
        self.error: BaseException | None = None
        self.finished = False
        self._iterator = events
        self._until = until
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with contextlib.closing(self._iterator):
                for event in self._iterator:
                    with self._changed:
                        self.events.append(event)
                        self._changed.notify_all()
                    if self._until(event):
                        break
        except BaseException as exc:  # re-raised by join()
            self.error = exc
        finally:
            with self._changed:
                self.finished = True
                self._changed.notify_all()

    def wait_for(
        self, condition: Callable[[list[ThreadEvent]], bool], timeout: float = DEADLINE
    ) -> bool:
        """Wait until ``condition(events)`` holds or the watcher ends; return whether it holds."""
        with self._changed:
            self._changed.wait_for(lambda: condition(self.events) or self.finished, timeout=timeout)
            return condition(self.events)

    def join(self, timeout: float = IDLE + DEADLINE) -> list[ThreadEvent]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the watcher did not stop"
        if self.error is not None:
            raise self.error
        return self.events


# -- servers of our own ---------------------------------------------------------------------


@pytest.fixture
def own_server_factory(tmp_path: Path) -> Iterator[Callable[..., SecantusServer]]:
    """Make servers of this test; every one still running at the end is stopped."""
    made: list[SecantusServer] = []

    def make(storage: str | None = None, *flags: str) -> SecantusServer:
        workdir = tmp_path / f"server-{len(made)}"
        workdir.mkdir()
        server = SecantusServer(
            workdir, storage or workdir / "data", *flags, start_timeout=START_TIMEOUT
        )
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


# -- sync watch -------------------------------------------------------------------------------


def test_sync_watch_reports_every_kind_of_change_in_order(wire_store: ThreadStore) -> None:
    thread = RoleThread(owner_id="o", name="before", store=wire_store)
    seed = thread.post("user", "seed")
    watcher_saw_first = threading.Event()
    writer_errors: list[BaseException] = []

    def write() -> None:
        try:
            mine = RoleThread.get(thread.id, store=wire_store)
            first = mine.post("user", "first", metadata={"n": 1})
            # Only message posts are caught up by after_message; wait for the stream.
            assert watcher_saw_first.wait(DEADLINE), "the watcher never saw the first post"
            mine.update_message(first.id, text="first, edited")
            second = mine.post("assistant", "second", images=[URL])
            mine.delete_message(second.id)
            mine.name = "after"
            mine.metadata = {"k": 1}
            mine.save()
            mine.add_role(role("critic"))
            mine.touch(datetime.timedelta(hours=1))
            mine.delete()
        except BaseException as exc:
            writer_errors.append(exc)
            raise

    writer = threading.Thread(target=write)
    writer.start()
    events: list[ThreadEvent] = []
    try:
        for event in thread.watch(after_message=seed.id, idle_timeout=IDLE):
            events.append(event)
            watcher_saw_first.set()
            if event.kind == "thread_deleted":
                break
    finally:
        watcher_saw_first.set()
        writer.join(DEADLINE)
    assert not writer_errors

    assert [e.kind for e in events] == [
        "message_added",
        "message_updated",
        "message_added",
        "message_deleted",
        "thread_updated",
        "thread_updated",
        "thread_updated",
        "thread_deleted",
    ]
    assert {e.thread_id for e in events} == {thread.id}
    added, edited, second, deleted, saved, roles, touched, gone = events
    assert added.message is not None
    assert (added.message.text, added.message.metadata, added.message_id) == (
        "first",
        {"n": 1},
        added.message.id,
    )
    assert edited.message is not None
    assert (edited.message_id, edited.message.id, edited.message.text) == (
        added.message_id,
        added.message_id,
        "first, edited",
    )
    assert second.message is not None
    assert (second.message.role, second.message.images) == ("assistant", [URL])
    assert deleted.message_id == second.message_id
    assert deleted.message is None
    assert saved.fields == {"name": "after", "metadata": {"k": 1}}
    assert roles.fields == {"roles": [role("critic").model_dump()]}
    assert set(touched.fields) == {"expires_at", "ttl"}
    assert touched.fields["ttl"] == 3600.0
    assert gone.version is None
    # The first post may have come from the backlog, which has no version or token.
    assert added.version in (None, 2)
    assert [e.version for e in events[1:-1]] == list(range(3, 9))
    assert all(e.resume_token is not None for e in events[1:])


def test_watch_reports_images_from_gridfs_as_the_data_uri_posted(wire_store: ThreadStore) -> None:
    thread = RoleThread(store=wire_store)
    seed = thread.post("user", "seed")
    big = big_png_data_uri()
    watcher = Watcher(
        thread.watch(after_message=seed.id, idle_timeout=IDLE),
        until=lambda e: e.kind == "message_updated",
    )
    posted = thread.post("user", "big <image>", images=[big])
    assert watcher.wait_for(bool)  # the stream is open: the edit arrives live
    thread.update_message(posted.id, text="still big <image>")
    events = watcher.join()
    assert [(e.kind, e.message.text, e.message.images) for e in events if e.message] == [
        ("message_added", "big <image>", [big]),
        ("message_updated", "still big <image>", [big]),
    ]


@pytest.mark.slow
def test_watcher_in_another_process_receives_posts_in_order(
    wire_uri: str, wire_store: ThreadStore
) -> None:
    thread = RoleThread(store=wire_store)
    seed = thread.post("system", "start")
    context = multiprocessing.get_context("spawn")
    first_seen = context.Event()
    child = context.Process(
        target=post_from_child,
        args=(
            wire_uri,
            wire_store.collection.database.name,
            thread.id,
            PROCESS_POSTS,
            first_seen,
        ),
    )
    child.start()
    events: list[ThreadEvent] = []
    try:
        for event in thread.watch(after_message=seed.id, idle_timeout=IDLE):
            events.append(event)
            first_seen.set()
            if len(events) == PROCESS_POSTS:
                break
    finally:
        first_seen.set()
        child.join(DEADLINE + IDLE)
        if child.is_alive():
            child.kill()
            child.join()
    assert child.exitcode == 0
    assert [e.kind for e in events] == ["message_added"] * PROCESS_POSTS
    assert added_texts(events) == [f"child-{i}" for i in range(PROCESS_POSTS)]
    assert [e.message.metadata for e in events if e.message] == [
        {"pid": child.pid} for _ in range(PROCESS_POSTS)
    ]
    stored = [m.id for m in RoleThread.get(thread.id, store=wire_store).messages()[1:]]
    assert [e.message_id for e in events] == stored


def post_from_child(uri: str, database: str, thread_id: str, count: int, first_seen: Any) -> None:
    """Child process: post one message, wait for the watcher to see it, post the rest."""
    threadmem_mongo.configure(uri=uri, database=database, timeout=10)
    try:
        mine = RoleThread.get(thread_id)
        mine.post("user", "child-0", metadata={"pid": os.getpid()})
        if not first_seen.wait(DEADLINE):
            raise SystemExit("the watcher never saw the first post")
        for i in range(1, count):
            mine.post("user", f"child-{i}", metadata={"pid": os.getpid()})
    finally:
        threadmem_mongo._config.reset()


# -- async watch ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_watch_reports_posts_of_a_concurrent_writer_task(
    wire_uri: str, wire_store: ThreadStore
) -> None:
    client: AsyncMongoClient[Document] = AsyncMongoClient(wire_uri)
    try:
        store = AsyncThreadStore(client[wire_store.collection.database.name]["threads"])
        thread = await AsyncRoleThread.create(store=store)
        seed = await thread.post("system", "start")
        big = big_png_data_uri()
        first_seen = asyncio.Event()
        count = 8

        async def watch() -> list[ThreadEvent]:
            seen: list[ThreadEvent] = []
            async with contextlib.aclosing(
                thread.watch(after_message=seed.id, idle_timeout=IDLE)
            ) as events:
                async for event in events:
                    seen.append(event)
                    first_seen.set()
                    if len(seen) == count:
                        break
            return seen

        async def write() -> list[str]:
            mine = await AsyncRoleThread.get(thread.id, store=store)
            ids = [(await mine.post("user", "w0")).id]
            await asyncio.wait_for(first_seen.wait(), DEADLINE)
            for i in range(1, count - 1):
                ids.append((await mine.post("user", f"w{i}")).id)
            ids.append((await mine.post("user", "picture", images=[big])).id)
            return ids

        events, ids = await asyncio.wait_for(asyncio.gather(watch(), write()), IDLE + DEADLINE)
    finally:
        await client.close()
    assert [e.message_id for e in events] == ids
    assert added_texts(events) == [f"w{i}" for i in range(count - 1)] + ["picture"]
    assert events[-1].message is not None
    assert events[-1].message.images == [big]
    versions = [e.version for e in events]
    assert versions == sorted(versions)
    assert len(set(versions)) == count


@pytest.mark.asyncio
async def test_async_watch_all_reports_threads_of_the_owner(
    wire_uri: str, wire_store: ThreadStore
) -> None:
    client: AsyncMongoClient[Document] = AsyncMongoClient(wire_uri)
    try:
        store = AsyncThreadStore(client[wire_store.collection.database.name]["threads"])
        probe = await AsyncRoleThread.create(owner_id="alice", store=store)
        seen: list[ThreadEvent] = []
        first = asyncio.Event()

        async def watch() -> None:
            async with contextlib.aclosing(
                AsyncRoleThread.watch_all(owner_id="alice", idle_timeout=IDLE, store=store)
            ) as events:
                async for event in events:
                    seen.append(event)
                    first.set()
                    if event.message is not None and event.message.text == "done":
                        break

        task = asyncio.create_task(watch())
        deadline = time.monotonic() + DEADLINE
        while not first.is_set():  # ping until the stream is open, under a deadline
            assert time.monotonic() < deadline, "watch_all never reported the probe"
            await probe.post("user", "ping")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(first.wait(), 0.2)
        start = len(seen)
        bob = await AsyncRoleThread.create(owner_id="bob", store=store)
        await bob.post("user", "bob's")
        alice = await AsyncRoleThread.create(owner_id="alice", store=store)
        await alice.post("user", "alice's")
        await probe.post("user", "done")
        await asyncio.wait_for(task, IDLE + DEADLINE)
    finally:
        await client.close()
    later = [e for e in seen[start:] if not (e.message and e.message.text == "ping")]
    assert [(e.kind, e.thread_id) for e in later] == [
        ("thread_created", alice.id),
        ("message_added", alice.id),
        ("message_added", probe.id),
    ]
    assert bob.id not in {e.thread_id for e in seen}


# -- backlog and resuming ---------------------------------------------------------------------


def test_after_message_reports_the_backlog_then_live_posts_without_duplicates(
    wire_store: ThreadStore,
) -> None:
    thread = RoleThread(store=wire_store)
    seed = thread.post("user", "seed")
    backlog = [thread.post("user", f"old-{i}") for i in range(3)]
    writer_object = RoleThread.get(thread.id, store=wire_store)
    live_count = 6
    watcher = Watcher(
        thread.watch(after_message=seed.id, idle_timeout=IDLE),
        until=lambda e: e.message is not None and e.message.text == f"new-{live_count - 1}",
    )
    # Posted while the stream opens and the backlog is read: each must show up once.
    live = [writer_object.post("user", f"new-{i}") for i in range(live_count)]
    events = watcher.join()
    assert added_texts(events) == [m.text for m in backlog + live]
    assert [e.message_id for e in events] == [m.id for m in backlog + live]


def test_after_message_with_an_unknown_id_raises_message_not_found(
    wire_store: ThreadStore,
) -> None:
    thread = RoleThread(store=wire_store)
    with pytest.raises(MessageNotFoundError):
        next(iter(thread.watch(after_message="no-such-message", idle_timeout=IDLE)))


def events_before(events: Iterator[ThreadEvent], last_message_id: str) -> list[ThreadEvent]:
    """The events up to the one that adds message ``last_message_id``, which must come."""
    seen: list[ThreadEvent] = []
    with contextlib.closing(events):
        for event in events:
            if event.kind == "message_added" and event.message_id == last_message_id:
                return seen
            seen.append(event)
    raise AssertionError(f"the watch ended before message {last_message_id} was added: {seen}")


def test_resume_after_continues_exactly_after_the_last_handled_event(
    wire_store: ThreadStore,
) -> None:
    thread = RoleThread(store=wire_store)
    seed = thread.post("user", "seed")
    watcher = Watcher(
        thread.watch(after_message=seed.id, idle_timeout=IDLE),
        until=lambda e: e.message is not None and e.message.text == "m2",
    )
    m0 = thread.post("user", "m0")
    assert watcher.wait_for(bool)  # the stream is open: what follows arrives live
    m1 = thread.post("user", "m1")
    m2 = thread.post("user", "m2")
    events = watcher.join()
    assert added_texts(events) == ["m0", "m1", "m2"]
    # The bot handled m1, then stopped before handling m2.
    handled = events[1]
    assert handled.resume_token is not None
    assert handled.version == 3
    # While nobody watches: an edit, a deletion, a post, a rename.
    thread.update_message(m0.id, text="m0 edited")
    thread.delete_message(m1.id)
    later = thread.post("assistant", "later")
    thread.name = "renamed"
    thread.save()
    # The watches below stop on this post instead of waiting for the server to be quiet.
    end = thread.post("system", "end")

    resumed = events_before(
        thread.watch(resume_after=handled.resume_token, idle_timeout=IDLE), end.id
    )
    assert [(e.kind, e.message_id) for e in resumed] == [
        ("message_added", m2.id),
        ("message_updated", m0.id),
        ("message_deleted", m1.id),
        ("message_added", later.id),
        ("thread_updated", None),
    ]
    assert [e.message.text if e.message else e.fields for e in resumed] == [
        "m2",
        "m0 edited",
        {},
        "later",
        {"name": "renamed"},
    ]
    assert [e.version for e in resumed] == list(range(4, thread.version))
    # Resuming from the last of them reports nothing more before the end.
    after_last = thread.watch(resume_after=resumed[-1].resume_token, idle_timeout=IDLE)
    assert events_before(after_last, end.id) == []


# -- watch_all --------------------------------------------------------------------------------


def test_watch_all_with_owner_reports_only_that_owners_threads(wire_store: ThreadStore) -> None:
    probe = RoleThread(owner_id="alice", store=wire_store)
    done = lambda e: e.message is not None and e.message.text == "done"  # noqa: E731
    alices = Watcher(
        RoleThread.watch_all(owner_id="alice", idle_timeout=IDLE, store=wire_store), done
    )
    everyones = Watcher(RoleThread.watch_all(idle_timeout=IDLE, store=wire_store), done)
    deadline = time.monotonic() + DEADLINE
    while not (alices.events and everyones.events):  # ping until both streams are open
        assert time.monotonic() < deadline, "watch_all never reported the probe"
        probe.post("user", "ping")
        alices.wait_for(bool, timeout=0.2)
        everyones.wait_for(bool, timeout=0.2)
    skip_alice, skip_everyone = len(alices.events), len(everyones.events)

    bob = RoleThread(owner_id="bob", store=wire_store)
    bob.post("user", "bob's")
    alice = RoleThread(owner_id="alice", name="a", store=wire_store)
    alice.post("user", "alice's")
    alice.name = "renamed"
    alice.save()
    bob.delete()
    probe.post("user", "done")

    def significant(events: list[ThreadEvent]) -> list[tuple[str, str, Any]]:
        return [
            (e.kind, e.thread_id, e.message.text if e.message else e.fields.get("name"))
            for e in events
            if not (e.message is not None and e.message.text == "ping")
        ]

    assert significant(alices.join()[skip_alice:]) == [
        ("thread_created", alice.id, "a"),
        ("message_added", alice.id, "alice's"),
        ("thread_updated", alice.id, "renamed"),
        ("message_added", probe.id, "done"),
    ]
    assert significant(everyones.join()[skip_everyone:]) == [
        ("thread_created", bob.id, None),
        ("message_added", bob.id, "bob's"),
        ("thread_created", alice.id, "a"),
        ("message_added", alice.id, "alice's"),
        ("thread_updated", alice.id, "renamed"),
        ("thread_deleted", bob.id, None),
        ("message_added", probe.id, "done"),
    ]


# -- a server restart -------------------------------------------------------------------------


@pytest.mark.slow
def test_watcher_survives_a_server_restart_without_missing_or_repeating(
    own_server_factory: Callable[..., SecantusServer],
) -> None:
    server = own_server_factory()
    server.start()
    database = f"tm_restart_{uuid.uuid4().hex}"
    watch_client: MongoClient[Document] = MongoClient(server.uri, serverSelectionTimeoutMS=2000)
    try:
        thread = RoleThread(store=ThreadStore(watch_client[database]["threads"]))
        seed = thread.post("system", "start")
        total = 10
        watcher = Watcher(
            thread.watch(after_message=seed.id, idle_timeout=IDLE + 30, reconnect_timeout=60),
            until=lambda e: e.message is not None and e.message.text == f"m{total - 1}",
        )
        with MongoClient(server.uri, serverSelectionTimeoutMS=5000) as before:
            writer = RoleThread.get(thread.id, store=ThreadStore(before[database]["threads"]))
            for i in range(total // 2):
                writer.post("user", f"m{i}")
        assert watcher.wait_for(lambda events: len(events) == total // 2)

        server.stop()
        server.start()  # same port, same storage path

        with MongoClient(server.uri, serverSelectionTimeoutMS=5000) as after:
            writer = RoleThread.get(thread.id, store=ThreadStore(after[database]["threads"]))
            assert writer.version == total // 2 + 1
            for i in range(total // 2, total):
                writer.post("user", f"m{i}")
            events = watcher.join(timeout=90)
            stored_ids = [m.id for m in writer.messages()[1:]]
    finally:
        watch_client.close()
        server.stop()
    assert added_texts(events) == [f"m{i}" for i in range(total)]
    assert [e.message_id for e in events] == stored_ids


# -- stopping a watcher -----------------------------------------------------------------------


class CursorCommands(monitoring.CommandListener):
    """Records the change-stream cursor ids the server opened, and the killCursors sent."""

    def __init__(self) -> None:
        self.opened: list[int] = []
        self.killed: list[int] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "killCursors":
            self.killed.extend(event.command["cursors"])

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.command_name == "aggregate":
            cursor_id = event.reply.get("cursor", {}).get("id", 0)
            if cursor_id:
                self.opened.append(int(cursor_id))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.mark.asyncio
async def test_cancelling_an_async_watcher_kills_its_cursor(
    wire_uri: str, wire_store: ThreadStore
) -> None:
    listener = CursorCommands()
    client: AsyncMongoClient[Document] = AsyncMongoClient(wire_uri, event_listeners=[listener])
    try:
        store = AsyncThreadStore(client[wire_store.collection.database.name]["threads"])
        thread = await AsyncRoleThread.create(store=store)
        seed = await thread.post("system", "start")
        seen = asyncio.Event()

        async def watch_forever() -> None:
            async for _event in thread.watch(after_message=seed.id, idle_timeout=IDLE):
                seen.set()

        task = asyncio.create_task(watch_forever())
        await thread.post("user", "hello")
        await asyncio.wait_for(seen.wait(), DEADLINE)
        (cursor_id,) = listener.opened
        assert listener.killed == []
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert listener.killed == [cursor_id]
    finally:
        await client.close()


def test_breaking_out_of_a_sync_watch_kills_its_cursor(
    wire_uri: str, wire_store: ThreadStore
) -> None:
    listener = CursorCommands()
    with MongoClient(wire_uri, event_listeners=[listener]) as client:
        store = ThreadStore(client[wire_store.collection.database.name]["threads"])
        thread = RoleThread(store=store)
        seed = thread.post("system", "start")
        thread.post("user", "hello")
        with contextlib.closing(thread.watch(after_message=seed.id, idle_timeout=IDLE)) as events:
            for event in events:
                assert event.message is not None
                assert event.message.text == "hello"
                break
            (cursor_id,) = listener.opened
            assert listener.killed == []
        assert listener.killed == [cursor_id]


@pytest.mark.asyncio
async def test_breaking_out_of_an_async_watch_kills_its_cursor(
    wire_uri: str, wire_store: ThreadStore
) -> None:
    listener = CursorCommands()
    client: AsyncMongoClient[Document] = AsyncMongoClient(wire_uri, event_listeners=[listener])
    try:
        store = AsyncThreadStore(client[wire_store.collection.database.name]["threads"])
        thread = await AsyncRoleThread.create(store=store)
        seed = await thread.post("system", "start")
        await thread.post("user", "hello")
        async with contextlib.aclosing(
            thread.watch(after_message=seed.id, idle_timeout=IDLE)
        ) as events:
            async for event in events:
                assert event.message is not None
                assert event.message.text == "hello"
                break
            (cursor_id,) = listener.opened
            assert listener.killed == []
        assert listener.killed == [cursor_id]
    finally:
        await client.close()


class GetMores(monitoring.CommandListener):
    """Records the ``maxTimeMS`` of every ``getMore``: how long each asked the server to wait."""

    def __init__(self) -> None:
        self.waits: list[int] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "getMore":
            self.waits.append(int(event.command.get("maxTimeMS", 0)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_idle_timeout_ends_a_quiet_watch_after_waiting_on_the_server(
    wire_uri: str, wire_store: ThreadStore
) -> None:
    listener = GetMores()
    client: MongoClient[Document] = MongoClient(wire_uri, event_listeners=[listener])
    try:
        store = ThreadStore(client[wire_store.collection.database.name]["threads"])
        thread = RoleThread(store=store)
        assert list(thread.watch(idle_timeout=0.1)) == []
    finally:
        client.close()
    # It ended on the server's silence: it asked the server to wait the idle time for
    # changes, rather than giving up before asking.
    assert listener.waits
    assert all(wait == 100 for wait in listener.waits)


# -- servers without change streams ----------------------------------------------------------


@pytest.mark.slow
def test_watch_on_a_standalone_server_says_a_replica_set_is_needed(
    own_server_factory: Callable[..., SecantusServer],
) -> None:
    server = own_server_factory(":memory:", "--standalone")
    server.start()
    with MongoClient(server.uri, serverSelectionTimeoutMS=5000) as client:
        store = ThreadStore(client["tm_standalone"]["threads"])
        thread = RoleThread(store=store)
        with pytest.raises(ConfigurationError, match="replica set"):
            next(iter(thread.watch(idle_timeout=IDLE)))
        with pytest.raises(ConfigurationError, match="replica set"):
            next(iter(RoleThread.watch_all(owner_id="o", idle_timeout=IDLE, store=store)))

        async def watch_async() -> None:
            aclient: AsyncMongoClient[Document] = AsyncMongoClient(server.uri)
            try:
                astore = AsyncThreadStore(aclient["tm_standalone"]["threads"])
                athread = await AsyncRoleThread.get(thread.id, store=astore)
                with pytest.raises(ConfigurationError, match="replica set"):
                    async for _event in athread.watch(idle_timeout=IDLE):
                        pass
            finally:
                await aclient.close()

        asyncio.run(watch_async())
    server.stop()


def test_watch_on_mongomock_raises_configuration_error() -> None:
    client: mongomock.MongoClient = mongomock.MongoClient()
    store = ThreadStore(client["tm_mongomock"]["threads"])
    thread = RoleThread(store=store)
    with pytest.raises(ConfigurationError, match="replica set"):
        next(iter(thread.watch(idle_timeout=IDLE)))
    with pytest.raises(ConfigurationError, match="replica set"):
        next(iter(RoleThread.watch_all(owner_id="o", idle_timeout=IDLE, store=store)))


# -- the example ------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_bots_async_example_asks_three_questions_and_gets_three_answers(
    wire_uri: str, wire_client: MongoClient[Document]
) -> None:
    database = f"tm_example_{uuid.uuid4().hex}"
    env = {
        **os.environ,
        "THREADMEM_MONGODB_URI": wire_uri,
        "THREADMEM_DATABASE": database,
    }
    env.pop("MONGODB_URI", None)
    try:
        result = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "two_bots_async.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            cwd=ROOT,
            check=False,
        )
    finally:
        wire_client.drop_database(database)
    assert result.returncode == 0, result.stderr
    transcript = result.stdout.split("Transcript", 1)[1].splitlines()[1:]
    assert [line.strip() for line in transcript if line.strip()] == [
        "system: Bot B answers the questions bot A asks.",
        "user: What is the capital of France?",
        "assistant: Paris.",
        "user: How many legs does a spider have?",
        "assistant: Eight.",
        "user: What is 6 times 7?",
        "assistant: 42.",
    ]
    live = [line for line in result.stdout.splitlines() if line.startswith(("A asks", "B answ"))]
    assert [line.split(":", 1)[0] for line in live] == ["A asks", "B answers"] * 3
