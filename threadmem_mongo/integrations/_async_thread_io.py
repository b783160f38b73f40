"""The thread I/O the adapters share: load, append, pop and delete the messages of one
thread, through the ``AsyncRoleThread`` API and the store's one-command append and
delete by id; a ``store`` of None is the library's configured default.

This file is the source of both twins: ``tools/synchro.py`` turns it into the
synchronous ``integrations/_thread_io.py``. Edit this file, then run
``python tools/synchro.py``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from threadmem_mongo import (
    InvalidInputError,
    MessageNotFoundError,
    RoleMessage,
    ThreadNotFoundError,
    V1RoleThread,
    VersionConflictError,
)
from threadmem_mongo._async_store import AsyncThreadStore
from threadmem_mongo._async_thread import AsyncRoleThread
from threadmem_mongo._config import async_default_store

#: How often an append tries to create the thread when each attempt is refused because
#: another writer created it in between (then the loop appends to theirs instead).
CREATE_ATTEMPTS = 20

#: How often an append of several messages retries its single conditional update after
#: a conflict before appending them one by one (which never conflicts).
BATCH_ATTEMPTS = 10

#: How often a pop re-reads the thread after another writer changed it in between.
POP_ATTEMPTS = 100


def _schema(
    thread_id: str,
    owner_id: str | None,
    thread_metadata: dict[str, Any],
    messages: Sequence[RoleMessage],
) -> V1RoleThread:
    now = time.time()
    return V1RoleThread(
        id=thread_id,
        owner_id=owner_id,
        public=False,
        metadata=thread_metadata,
        messages=[m.to_v1() for m in messages],
        created=now,
        updated=now,
    )


async def load_messages(
    store: AsyncThreadStore | None, thread_id: str, last: int | None = None
) -> list[RoleMessage]:
    """Return the thread's messages (its last ``last``), images resolved; [] if no thread."""
    try:
        thread = await AsyncRoleThread.get(thread_id, last=last, store=store)
    except ThreadNotFoundError:
        return []
    return await thread.messages()


async def append_messages(
    store: AsyncThreadStore | None,
    thread_id: str,
    owner_id: str | None,
    thread_metadata: dict[str, Any],
    messages: Sequence[RoleMessage],
) -> None:
    """Append ``messages`` in order, creating the thread with them if it does not exist.

    One message goes to an existing thread with room for it inline in one update
    (``AsyncThreadStore.append_if_room``), without reading the thread first. Otherwise:
    a new thread is created with all the messages in one insert; an existing one gets
    them in one update conditional on the version just read (``extend``), so the batch
    lands whole and contiguous. A conflict re-reads and retries; after
    ``BATCH_ATTEMPTS`` conflicts in a row the remaining messages are appended one by
    one with ``add_msg``, whose ``$push`` needs no version, so a writer among many busy
    ones still lands everything. A thread deleted in between (a concurrent clear) is
    created again with the messages not yet appended.
    """
    pending = list(messages)
    if len(pending) == 1 and await store_or_default(store).append_if_room(thread_id, pending[0]):
        return
    refused = 0
    conflicts = 0
    while pending:
        try:
            thread = await AsyncRoleThread.get(thread_id, last=0, store=store)
        except ThreadNotFoundError:
            schema = _schema(thread_id, owner_id, thread_metadata, pending)
            try:
                await AsyncRoleThread.from_v1(schema, store=store)
            except InvalidInputError:
                # Another writer created the thread first (append to theirs), or created
                # it and a clear deleted it again before the refusal was explained.
                refused += 1
                if refused >= CREATE_ATTEMPTS:
                    raise
                continue
            return
        try:
            if conflicts < BATCH_ATTEMPTS:
                await thread.extend(pending)
                return
            while pending:
                await thread.add_msg(pending[0])
                del pending[0]
        except VersionConflictError:
            conflicts += 1
        except ThreadNotFoundError:
            continue


async def pop_last(store: AsyncThreadStore | None, thread_id: str) -> RoleMessage | None:
    """Delete the thread's last message and return it (images resolved); None if empty.

    The delete is conditional on the version read with the message, so two pops never
    take the same message; a pop that loses that race reads again.

    Raises:
        VersionConflictError: Other writers changed the thread before every one of
            ``POP_ATTEMPTS`` attempts.
    """
    for attempt in range(POP_ATTEMPTS):
        try:
            thread = await AsyncRoleThread.get(thread_id, last=1, store=store)
        except ThreadNotFoundError:
            return None
        # Read before deleting: the delete releases the message's GridFS images.
        loaded = await thread.messages()
        if not loaded:
            return None
        try:
            await thread.delete_message(loaded[-1].id)
        except ThreadNotFoundError:
            return None
        except (VersionConflictError, MessageNotFoundError):
            if attempt == POP_ATTEMPTS - 1:
                raise
            continue
        return loaded[-1]
    raise AssertionError("unreachable")  # pragma: no cover


async def delete_thread(store: AsyncThreadStore | None, thread_id: str) -> None:
    """Delete the thread, its pages and its images by id, without reading it first;
    nothing happens if it does not exist."""
    await store_or_default(store).delete(thread_id)


def store_or_default(store: AsyncThreadStore | None) -> AsyncThreadStore:
    """``store``, or the configured default of ``threadmem_mongo.aio`` if it is None."""
    return store if store is not None else async_default_store()
