"""threadmem-mongo's own figures: post cost versus thread length against the raw pymongo
floor (sections 1 and 4), and the workloads shared with the original threadmem (2)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from bench.measure import summary, timed
from bench.plan import TEXT, Plan, prefill_messages
from bench.targets import (
    Floor,
    PostCommand,
    SameCommand,
    Target,
    has_last,
    post,
    stored_message,
)
from threadmem_mongo import RoleThread

COLLECTION = "post_cost"
WORKLOAD_COLLECTION = "workloads"


def _template(target: Target) -> dict[str, Any]:
    """The message subdocument a post stores, read back from the store itself."""
    store = target.store(COLLECTION)
    thread = RoleThread(owner_id="template", store=store)
    thread.post("user", TEXT)
    return stored_message(target.collection(COLLECTION), thread)


def post_cost(target: Target, plan: Plan, command: PostCommand | None) -> dict[str, Any]:
    """Latency (and, on the wire, bytes) of one post at each thread length.

    Three kinds of write take turns on three copies of the same thread: the library's
    post, the floor (raw ``update_one`` ``$push``) and, when ``command`` (the library's captured
    post command) is given, raw pymongo replaying that same command. Their order rotates
    from one post to the next, so drift in the server hits all alike; each repetition
    yields one paired ratio.
    """
    store = target.store(COLLECTION)
    collection = target.collection(COLLECTION)
    template = _template(target)
    rows: list[dict[str, Any]] = []
    same_error = "" if command is not None else "the post command was not captured"
    for length in plan.lengths:
        start = time.perf_counter()
        thread = RoleThread.from_openai(prefill_messages(length), owner_id="bench", store=store)
        prefill_seconds = time.perf_counter() - start
        floor = Floor(collection, thread)
        same = None
        if command is not None:
            try:
                same = SameCommand(collection, thread, command)
            except (KeyError, TypeError) as exc:
                same_error = f"cannot replay the post command: {exc!r}"
        calls: dict[str, Callable[[], None]] = {
            "post": functools.partial(post, thread),
            "floor": functools.partial(floor.push, template),
        }
        if same is not None:
            calls["same"] = same.push
        for call in calls.values():  # warm: the first write of each
            call()
        names = list(calls)
        samples: dict[str, list[float]] = {name: [] for name in names}
        ratios: dict[str, list[float]] = {"ratio": [], "ratio_same": [], "same_floor": []}
        for _rep in range(plan.reps):
            totals = dict.fromkeys(names, 0.0)
            for i in range(plan.posts_per_rep):
                shift = i % len(names)
                for name in names[shift:] + names[:shift]:
                    totals[name] += timed(calls[name])
            for name in names:
                samples[name].append(totals[name] / plan.posts_per_rep)
            ratios["ratio"].append(totals["post"] / totals["floor"])
            if same is not None:
                ratios["ratio_same"].append(totals["post"] / totals["same"])
                ratios["same_floor"].append(totals["same"] / totals["floor"])
        gets: list[float] = []
        to_openai: list[float] = []
        loaded: RoleThread | None = None
        for _rep in range(plan.reps):
            start = time.perf_counter()
            loaded = RoleThread.get(thread.id, store=store)
            gets.append(time.perf_counter() - start)
        assert loaded is not None
        for _rep in range(plan.reps):
            to_openai.append(timed(loaded.to_openai))
        last20: list[float] = []
        if has_last():
            for _rep in range(plan.reps):
                start = time.perf_counter()
                RoleThread.get(thread.id, store=store, last=20)
                last20.append(time.perf_counter() - start)
        row: dict[str, Any] = {
            "length": length,
            "prefill_seconds": prefill_seconds,
            "get": summary(gets),
            "to_openai": summary(to_openai),
        }
        row.update({name: summary(values) for name, values in samples.items()})
        row.update({name: summary(values) for name, values in ratios.items() if values})
        if last20:
            row["last20"] = summary(last20)
        row.update(_post_traffic(target, thread.id, floor, template))
        rows.append(row)
    return {"target": target.name, "label": target.label, "rows": rows, "same_error": same_error}


def _post_traffic(
    target: Target, thread_id: str, floor: Floor, template: dict[str, Any]
) -> dict[str, Any]:
    """Round trips and bytes of one post, one floor push and one whole read."""
    log = target.log
    store = target.monitored_store(COLLECTION)
    collection = target.monitored_collection(COLLECTION)
    if log is None or store is None or collection is None:
        return {}
    thread = RoleThread.get(thread_id, store=store)
    with log.window() as post_window:
        post(thread)
    with log.window() as floor_window:
        floor.push(template, collection)
    with log.window() as get_window:
        RoleThread.get(thread_id, store=store)
    traffic = {
        "post_traffic": post_window.as_dict(),
        "floor_traffic": floor_window.as_dict(),
        "get_traffic": get_window.as_dict(),
    }
    if has_last():
        with log.window() as last_window:
            RoleThread.get(thread_id, store=store, last=20)
        traffic["last20_traffic"] = last_window.as_dict()
    return traffic


def workloads(target: Target, plan: Plan) -> dict[str, Any]:
    """Create a thread, and post N messages into a new thread (the original's workloads)."""
    store = target.store(WORKLOAD_COLLECTION)
    RoleThread(owner_id="warm", store=store).post("user", TEXT)
    creates = [timed(lambda: RoleThread(owner_id="bench", store=store)) for _ in range(plan.reps)]
    post_n: list[dict[str, Any]] = []
    for count in plan.post_n:
        totals: list[float] = []
        for _rep in range(plan.post_n_reps):
            thread = RoleThread(owner_id="bench", store=store)
            start = time.perf_counter()
            for _ in range(count):
                post(thread)
            totals.append(time.perf_counter() - start)
        post_n.append({"count": count, "total": summary(totals)})
    return {
        "target": target.name,
        "create": summary(creates),
        "post_n": post_n,
        "has_last": has_last(),
    }
