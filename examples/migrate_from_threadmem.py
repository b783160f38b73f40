"""Copy role threads from the SQL database of the original threadmem into MongoDB.

Reads the ``role_threads`` and ``role_messages`` tables of a threadmem database and
stores each thread with ``RoleThread.from_v1``, keeping thread and message ids.

Usage (the SQLite file is opened read-only; without ``THREADMEM_MONGODB_URI`` the
threads go to the embedded local store)::

    THREADMEM_MONGODB_URI=mongodb://localhost:27017 \\
        python examples/migrate_from_threadmem.py ~/.agentsea/data/threads.db
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections import defaultdict
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threadmem_mongo import (
    RoleThread,
    ThreadStore,
    ThreadTooLargeError,
    V1Role,
    V1RoleMessage,
    V1RoleThread,
)

THREAD_COLUMNS = "id, owner_id, public, name, role_mapping, meta_data, created, updated"
MESSAGE_COLUMNS = "id, thread_id, role, text, images, private, created, meta_data"


@dataclass
class MigrationReport:
    """What a migration run did, by thread id."""

    migrated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in MongoDB
    failed: dict[str, str] = field(default_factory=dict)  # thread id -> reason


def _json(value: str | None) -> Any:
    """Decode a JSON text column; NULL and empty text are None."""
    return json.loads(value) if value else None


def _message(row: tuple[Any, ...]) -> V1RoleMessage:
    msg_id, thread_id, role, text, images, private, created, meta_data = row
    return V1RoleMessage(
        id=msg_id,
        thread_id=thread_id,
        role=role,
        text=text,
        images=_json(images) or [],
        private=bool(private),
        created=created,
        metadata=_json(meta_data),
    )


def _thread(row: tuple[Any, ...], messages: list[V1RoleMessage]) -> V1RoleThread:
    thread_id, owner_id, public, name, role_mapping, meta_data, created, updated = row
    roles = {role_name: V1Role(**role) for role_name, role in (_json(role_mapping) or {}).items()}
    return V1RoleThread(
        id=thread_id,
        owner_id=owner_id,
        public=bool(public),
        name=name,
        metadata=_json(meta_data),
        role_mapping=roles,
        messages=messages,
        created=created,
        updated=updated if updated is not None else created,
    )


def migrate(connection: Any, *, store: ThreadStore | None = None) -> MigrationReport:
    """Copy every role thread of a threadmem database into ``store``.

    Threads whose id is already in the store are skipped, so the migration can be run
    again after a partial run. A thread that cannot be stored (for example, one holding
    a message with empty text and no images, or one over the document size limit) is
    reported in ``failed``, and the others are still migrated.

    Args:
        connection: A DB-API connection to the threadmem database, e.g. ``sqlite3.connect(path)``.
        store: Where to store the threads; the configured default if omitted.

    Returns:
        Which threads were migrated, skipped and failed.
    """
    cursor = connection.cursor()
    cursor.execute(f"SELECT {MESSAGE_COLUMNS} FROM role_messages ORDER BY created, id")
    message_rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in cursor.fetchall():
        if row[1] is not None:  # messages without a thread are not reachable in threadmem
            message_rows[row[1]].append(row)

    cursor.execute(f"SELECT {THREAD_COLUMNS} FROM role_threads ORDER BY created, id")
    report = MigrationReport()
    for row in cursor.fetchall():
        thread_id = row[0]
        if RoleThread.find(id=thread_id, store=store):
            report.skipped.append(thread_id)
            continue
        try:
            messages = [_message(message_row) for message_row in message_rows[thread_id]]
            RoleThread.from_v1(_thread(row, messages), store=store)
        except (ValueError, ThreadTooLargeError) as exc:
            # InvalidInputError from threadmem_mongo, pydantic's ValidationError for rows
            # that do not fit the V1 schemas, and JSONDecodeError are all ValueErrors.
            report.failed[thread_id] = f"{type(exc).__name__}: {exc}"
        else:
            report.migrated.append(thread_id)
    return report


class NotThreadmemDatabaseError(Exception):
    """The path names no SQLite database holding threadmem's tables."""


def open_read_only(path: str) -> sqlite3.Connection:
    """Open the threadmem database at ``path`` for reading only.

    Raises:
        NotThreadmemDatabaseError: Nothing is there, it is not SQLite, or it lacks the tables.
    """
    # mode=ro never creates a file, so a mistyped path cannot leave an empty one behind.
    uri = Path(path).expanduser().absolute().as_uri() + "?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise NotThreadmemDatabaseError(
            f"{path} is not a threadmem database: it cannot be opened ({exc})"
        ) from exc
    try:
        tables = {
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    except sqlite3.Error as exc:
        connection.close()
        raise NotThreadmemDatabaseError(
            f"{path} is not a threadmem database: it is not SQLite ({exc})"
        ) from exc
    missing = {"role_threads", "role_messages"} - tables
    if missing:
        connection.close()
        raise NotThreadmemDatabaseError(
            f"{path} is not a threadmem database: it has no {' or '.join(sorted(missing))} table"
        )
    return connection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sqlite_path", help="the threadmem database, e.g. ~/.agentsea/data/threads.db"
    )
    args = parser.parse_args()
    try:
        connection = open_read_only(args.sqlite_path)
    except NotThreadmemDatabaseError as exc:
        sys.exit(f"{parser.prog}: error: {exc}")
    with closing(connection):
        report = migrate(connection)
    print(
        f"migrated {len(report.migrated)}, skipped {len(report.skipped)}, "
        f"failed {len(report.failed)}"
    )
    for thread_id, reason in report.failed.items():
        print(f"  {thread_id}: {reason}")


if __name__ == "__main__":
    main()
