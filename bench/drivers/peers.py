"""Drives the peer MongoDB chat stores on the benchmark's wire server.

* langchain-mongodb ``MongoDBChatMessageHistory``: one document per message
  (``add_message`` is one ``insert``); reads ``find`` by session id.
* openai-agents ``MongoDBSession`` (``agents.extensions.memory.mongodb_session``):
  ``add_items`` reserves sequence numbers on a session document, then inserts one
  document per batch; ``get_items(limit=...)`` reads the newest documents.

Reads a JSON payload on stdin, prints one JSON line. Each peer is measured on its own;
one that cannot be imported is reported as not run with the import error.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any

from bson import json_util

from bench.measure import CommandLog, summary


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def floor_message(payload: dict[str, Any]) -> dict[str, Any]:
    """The library's message subdocument with a fresh id: what the floor pushes."""
    return {**payload["template"], "id": str(uuid.uuid4()), "created": time.time()}


def load_payload(raw: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(raw)
    payload["template"] = json_util.loads(payload["template"])
    return payload


def floor_push(payload: dict[str, Any], length: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The filter and update of one floor push into the thread copy of ``length``."""
    return (
        {"_id": payload["floor_ids"][str(length)]},
        {"$push": {"messages": floor_message(payload)}},
    )


def paired(
    reps: int, per_rep: int, peer: Callable[[], Any], floor: Callable[[], Any]
) -> tuple[list[float], list[float], list[float]]:
    """Alternate ``peer`` and ``floor`` (order swapped every other pair); per repetition
    return the mean of each and their ratio."""
    peers, floors, ratios = [], [], []
    for _ in range(reps):
        peer_total = floor_total = 0.0
        for i in range(per_rep):
            for call in (peer, floor) if i % 2 == 0 else (floor, peer):
                start = time.perf_counter()
                call()
                elapsed = time.perf_counter() - start
                if call is peer:
                    peer_total += elapsed
                else:
                    floor_total += elapsed
        peers.append(peer_total / per_rep)
        floors.append(floor_total / per_rep)
        ratios.append(peer_total / floor_total)
    return peers, floors, ratios


async def paired_async(
    reps: int,
    per_rep: int,
    peer: Callable[[], Awaitable[Any]],
    floor: Callable[[], Awaitable[Any]],
) -> tuple[list[float], list[float], list[float]]:
    """:func:`paired` for coroutines."""
    peers, floors, ratios = [], [], []
    for _ in range(reps):
        peer_total = floor_total = 0.0
        for i in range(per_rep):
            for call in (peer, floor) if i % 2 == 0 else (floor, peer):
                start = time.perf_counter()
                await call()
                elapsed = time.perf_counter() - start
                if call is peer:
                    peer_total += elapsed
                else:
                    floor_total += elapsed
        peers.append(peer_total / per_rep)
        floors.append(floor_total / per_rep)
        ratios.append(peer_total / floor_total)
    return peers, floors, ratios


def _row(
    length: int,
    prefill: float,
    messages_read: int,
    timings: tuple[list[float], list[float], list[float], list[float], list[float]],
    windows: tuple[Any, Any, Any],
) -> dict[str, Any]:
    """One table row of a peer store: timings summarised, traffic per operation."""
    appends, floors, ratios, reads, lasts = timings
    append_window, read_window, last_window = windows
    return {
        "length": length,
        "prefill_seconds": prefill,
        "messages_read": messages_read,
        "append": summary(appends),
        "floor": summary(floors),
        "ratio_floor": summary(ratios),
        "read": summary(reads),
        "last20": summary(lasts),
        "append_traffic": append_window.as_dict(),
        "read_traffic": read_window.as_dict(),
        "last20_traffic": last_window.as_dict(),
    }


def langchain(payload: dict[str, Any]) -> dict[str, Any]:
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_mongodb.chat_message_histories import MongoDBChatMessageHistory
    from pymongo import MongoClient

    text, reps, per_rep = payload["text"], payload["reps"], payload["posts_per_rep"]
    log = CommandLog()
    client: MongoClient[dict[str, Any]] = MongoClient(payload["uri"])
    monitored: MongoClient[dict[str, Any]] = MongoClient(payload["uri"], event_listeners=[log])
    database = payload["database"]
    floor_collection = client[database][payload["floor_collection"]]

    def push_floor(length: int) -> None:
        floor_collection.update_one(*floor_push(payload, length))

    rows = []
    try:
        for length in payload["lengths"]:
            session = f"lc-{length}-{uuid.uuid4()}"

            def history(c: Any, size: int | None = None, s: str = session) -> Any:
                return MongoDBChatMessageHistory(
                    None,
                    s,
                    database_name=database,
                    collection_name="langchain_history",
                    client=c,
                    history_size=size,
                )

            timed_history = history(client)
            last_history = history(client, 20)
            start = time.perf_counter()
            timed_history.add_messages(
                [(HumanMessage if i % 2 == 0 else AIMessage)(content=text) for i in range(length)]
            )
            prefill = time.perf_counter() - start
            floor = functools.partial(push_floor, length)
            append = functools.partial(timed_history.add_message, HumanMessage(content=text))
            append()  # warm
            floor()
            appends, floors, ratios = paired(reps, per_rep, append, floor)
            reads, lasts = [], []
            for _ in range(reps):
                start = time.perf_counter()
                read = timed_history.messages
                reads.append(time.perf_counter() - start)
                start = time.perf_counter()
                tail = last_history.messages
                lasts.append(time.perf_counter() - start)
            assert len(tail) == 20, len(tail)
            watched = history(monitored)
            watched_last = history(monitored, 20)
            with log.window() as append_window:
                watched.add_message(HumanMessage(content=text))
            with log.window() as read_window:
                watched.messages  # noqa: B018 - a property that reads the store
            with log.window() as last_window:
                watched_last.messages  # noqa: B018
            rows.append(
                _row(
                    length,
                    prefill,
                    len(read),
                    (appends, floors, ratios, reads, lasts),
                    (append_window, read_window, last_window),
                )
            )
    finally:
        client.close()
        monitored.close()
    return {"version": _version("langchain-mongodb"), "rows": rows}


async def _agents(payload: dict[str, Any]) -> dict[str, Any]:
    from agents.extensions.memory.mongodb_session import MongoDBSession
    from pymongo import AsyncMongoClient

    text, reps, per_rep = payload["text"], payload["reps"], payload["posts_per_rep"]
    log = CommandLog()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(payload["uri"])
    monitored: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        payload["uri"], event_listeners=[log]
    )
    database = payload["database"]
    item = {"role": "user", "content": text}

    floor_collection = client[database][payload["floor_collection"]]

    async def push_floor(length: int) -> None:
        await floor_collection.update_one(*floor_push(payload, length))

    async def clock(call: Callable[[], Awaitable[Any]]) -> float:
        start = time.perf_counter()
        await call()
        return time.perf_counter() - start

    rows = []
    try:
        for length in payload["lengths"]:
            session_id = f"agents-{length}-{uuid.uuid4()}"
            session = MongoDBSession(session_id, client=client, database=database)
            turn = [item, {"role": "assistant", "content": text}]
            start = time.perf_counter()
            for _ in range(length // 2):
                await session.add_items(turn)
            if length % 2:
                await session.add_items([item])
            prefill = time.perf_counter() - start
            floor = functools.partial(push_floor, length)
            append = functools.partial(session.add_items, [item])
            await append()  # warm
            await floor()
            appends, floors, ratios = await paired_async(reps, per_rep, append, floor)
            reads = [await clock(session.get_items) for _ in range(reps)]
            lasts = [
                await clock(functools.partial(session.get_items, limit=20)) for _ in range(reps)
            ]
            read = await session.get_items()
            watched = MongoDBSession(session_id, client=monitored, database=database)
            await watched.get_items(limit=1)  # its first call creates indexes
            with log.window() as append_window:
                await watched.add_items([item])
            with log.window() as read_window:
                await watched.get_items()
            with log.window() as last_window:
                await watched.get_items(limit=20)
            rows.append(
                _row(
                    length,
                    prefill,
                    len(read),
                    (appends, floors, ratios, reads, lasts),
                    (append_window, read_window, last_window),
                )
            )
    finally:
        await client.close()
        await monitored.close()
    return {"version": _version("openai-agents"), "rows": rows}


def agents(payload: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_agents(payload))


def main() -> int:
    payload = load_payload(sys.stdin.read())
    result: dict[str, Any] = {"pymongo": _version("pymongo")}
    for name, run in (("langchain", langchain), ("agents", agents)):
        try:
            result[name] = run(payload)
        except Exception as exc:
            traceback.print_exc()
            result[name] = {"not_run": f"{type(exc).__name__}: {exc}"[:300]}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
