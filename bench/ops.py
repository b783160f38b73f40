"""Section 5: round trips and bytes of each operation, from command monitoring.

Deterministic: the same code path sends the same commands whatever the machine. Every
figure is taken after the store's first use, which also sends its ``createIndexes``.
"""

from __future__ import annotations

import inspect
from typing import Any

from bench.markdown import table
from bench.page import Page, measured
from bench.plan import TEXT, Plan, prefill_messages
from bench.targets import Floor, Target, has_last, stored_message
from threadmem_mongo import RoleThread

COLLECTION = "ops"


def round_trips(target: Target, plan: Plan) -> dict[str, Any]:
    log = target.log
    store = target.monitored_store(COLLECTION)
    collection = target.monitored_collection(COLLECTION)
    if log is None or store is None or collection is None:
        raise RuntimeError(f"{target.label} has no command monitoring")
    length = plan.ops_length
    owner = "ops-owner"
    threads = [
        RoleThread.from_openai(prefill_messages(length), owner_id=owner, store=store)
        for _ in range(plan.list_threads)
    ]
    thread = RoleThread.get(threads[0].id, store=store)
    rows: list[dict[str, Any]] = []

    def record(operation: str, call: Any, note: str = "") -> None:
        with log.window() as window:
            call()
        rows.append({"operation": operation, "note": note, **window.as_dict()})

    with log.window() as create_window:
        fresh = RoleThread(owner_id="ops-fresh", store=store)
    rows.append({"operation": "create an empty thread", "note": "", **create_window.as_dict()})
    message = thread.post("user", TEXT)
    template = stored_message(collection, thread)
    floor = Floor(collection, thread)
    thread = RoleThread.get(thread.id, store=store)
    record(
        "post",
        lambda: thread.post("user", TEXT),
        "an append (`$push`) by an object that is up to date",
    )
    record(
        "raw pymongo `update_one` `$push` (floor)",
        lambda: floor.push(template),
        "same message subdocument, same server",
    )
    record(
        f"get whole thread ({length + 2} messages)",
        lambda: RoleThread.get(thread.id, store=store),
        "one `find` by `_id`; the reply is the whole document",
    )
    if has_last():
        record(
            "get last 20 (`RoleThread.get(id, last=20)`)",
            lambda: RoleThread.get(thread.id, store=store, last=20),
            "one `find` with a `$slice` projection",
        )
    else:
        rows.append(
            {
                "operation": "get last 20",
                "not_available": True,
                "note": "not available: `RoleThread.get` has no `last=` yet",
            }
        )
    record(
        "raw pymongo `find_one` with `$slice: -20`",
        lambda: collection.find_one({"_id": thread.id}, {"messages": {"$slice": -20}}),
        "reference, not the library",
    )
    record(
        f"list threads ({plan.list_threads} threads of {length} messages)",
        lambda: RoleThread.find(owner_id=owner, store=store),
        "one `find`; whole documents, messages included",
    )
    if _takes(RoleThread.find, "last"):
        record(
            f"list threads, `last=0` ({plan.list_threads} threads)",
            lambda: RoleThread.find(owner_id=owner, store=store, last=0),
            "one `find`; the threads without their messages",
        )

    def save() -> None:
        thread.name = "renamed"
        thread.save()

    thread = RoleThread.get(thread.id, store=store)
    record("save (rename)", save, "one conditional `update` at the read version")
    record(
        "edit a message",
        lambda: thread.update_message(message.id, text="edited"),
        "one conditional `update` with the positional `$`",
    )
    record(
        "post after another writer's post",
        _after_other_writer(store, thread),
        "the post pinned to the object's version (missed), again unpinned, then one read of "
        "the messages after the object's last one (the object was behind)",
    )
    if has_last():
        windowed = RoleThread.get(thread.id, store=store, last=20)
        record(
            "post after another writer's post, object loaded with `last=20`",
            _after_other_writer(store, windowed),
            "as above: only the messages after the object's last one are read",
        )
    fresh.delete()
    return {"length": length, "rows": rows}


def _takes(function: Any, parameter: str) -> bool:
    return parameter in inspect.signature(function).parameters


def _after_other_writer(store: Any, thread: RoleThread) -> Any:
    other = RoleThread.get(thread.id, store=store)

    def call() -> None:
        thread.post("user", TEXT)

    # Another object appends first, so ``thread`` is one version behind when it posts.
    other.post("assistant", TEXT)
    return call


# -- the page -------------------------------------------------------------------------------


@measured("## 5. Round trips and bytes per operation", "ops", "Round trips and bytes")
def render(page: Page, section: dict[str, Any]) -> list[str]:
    """Section 5: a row per operation with its commands and bytes."""
    lines = [
        f"On the wire server, a thread of {section['length']:,} messages, after the "
        "store's first use (which also creates the indexes: one `createIndexes` per "
        "collection, one more for the message-id index, and one `listIndexes`). "
        "Deterministic: the same code sends the same commands on any machine.",
        "",
    ]
    rows = []
    for row in section["rows"]:
        if row.get("not_available"):
            rows.append([row["operation"], "—", "—", "—", "—", row["note"]])
            page.note_missing("get last 20", row["note"])
            continue
        rows.append(
            [
                row["operation"],
                row["round_trips"],
                ", ".join(f"`{c}`" for c in row["commands"]),
                f"{row['bytes_sent']:,}",
                f"{row['bytes_received']:,}",
                row["note"],
            ]
        )
    return lines + table(
        ["Operation", "Round trips", "Commands", "Bytes sent", "Bytes received", "Note"], rows
    )
