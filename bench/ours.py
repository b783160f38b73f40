"""threadmem-mongo's own figures: post cost versus thread length against the raw pymongo
floor (sections 1 and 4, measured and rendered here), and the workloads shared with the
original threadmem (rendered in section 2 by ``bench.original``)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bench import plots
from bench.markdown import DASH, lat, reason, rows_by_length, table, times, traffic
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

if TYPE_CHECKING:
    from bench.page import Page

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


# -- the page -------------------------------------------------------------------------------

#: The post's target, as a multiple of the raw pymongo floor.
TARGET_RATIO = 1.2
BACKENDS = (
    ("SecantusDB (wire)", "post_cost_wire"),
    ("mongomock (in process)", "post_cost_mongomock"),
)


def post_rows(page: Page, key: str) -> dict[int, dict[str, Any]]:
    """The rows of ``post_cost`` on one backend (``key``), by thread length."""
    return rows_by_length(page.sections.get(key))


def _post_command(page: Page, lead: str = "") -> str:
    """`` (<lead>`update` with `$push`, ...)``, or nothing if it was not captured."""
    described = (page.results.get("post_command") or {}).get("described")
    return f" ({lead}{described})" if described else ""


def headline(page: Page) -> str:
    """The headline's line: post ÷ floor at every length on the wire server."""
    wire = post_rows(page, "post_cost_wire")
    if not wire:
        why = reason(page.sections.get("post_cost_wire")) or "no data"
        return f"- **Post vs raw pymongo floor (ratio to raw pymongo)**: {why}."
    parts = [
        f"{times(row['ratio'])} at {length:,} messages" for length, row in sorted(wire.items())
    ]
    over = [
        f"{length:,}"
        for length, row in sorted(wire.items())
        if row["ratio"]["median"] > TARGET_RATIO
    ]
    verdict = (
        f"**over the {TARGET_RATIO}x target at {', '.join(over)} messages**, within it elsewhere"
        if over
        else f"within the {TARGET_RATIO}x target at every length"
    )
    return (
        "- **Post vs raw pymongo floor (ratio to raw pymongo `update_one` `$push`, "
        f"same message, same server, same thread length)**: {'; '.join(parts)} — "
        f"{verdict}."
    )


def render_post_cost(page: Page) -> list[str]:
    """Section 1: post, floor and the same command raw, then reads, traffic and plots."""
    lines = [
        "## 1. Post cost versus thread length",
        "",
        "Three writers take turns on three copies of the same thread: the library's "
        "`post`; the floor, raw pymongo `update_one` with `$push` of the same message "
        "subdocument; and raw pymongo sending the library's own post command"
        f"{_post_command(page)}, captured by command monitoring and replayed with "
        "the same filter and update. The library moves a thread's oldest messages to "
        "overflow pages past its inline limit; both copies stop growing at that limit "
        "(`$slice` in the same `$push`), so all three update documents of about the same "
        "size. *Post ÷ same command* is what the library's Python "
        "adds; *same command ÷ floor* is what the richer command costs the server.",
        "",
    ]
    wire, mock = post_rows(page, "post_cost_wire"), post_rows(page, "post_cost_mongomock")
    captured = page.results.get("post_command") or {}
    if captured.get("not_run"):
        page.note_missing("Same command, raw", f"not run: {captured['not_run']}")
    for label, key in BACKENDS:
        why = reason(page.sections.get(key))
        if why:
            lines += [f"{label}: {why}", ""]
            page.note_missing(f"Post cost on {label}", why)
            continue
        same_error = (page.sections.get(key) or {}).get("same_error")
        if same_error and not captured.get("not_run"):
            page.note_missing(f"Same command, raw, on {label}", f"not run: {same_error}")
        lines += [f"**{label}**, one post:", ""]
        lines += table(
            [
                "Messages in thread",
                "Post",
                "Floor (`update_one` `$push`)",
                "Same command, raw",
                "Post ÷ floor",
                "Post ÷ same command",
                "Same command ÷ floor",
            ],
            [
                [
                    f"{length:,}",
                    lat(row["post"]),
                    lat(row["floor"]),
                    lat(row.get("same")),
                    times(row["ratio"]),
                    times(row.get("ratio_same")),
                    times(row.get("same_floor")),
                ]
                for length, row in sorted(post_rows(page, key).items())
            ],
        )
    if wire or mock:
        lines += ["Reading the thread back (`RoleThread.get`) and converting it:", ""]
        rows = []
        for length in sorted(set(wire) | set(mock)):
            on_wire, on_mock = wire.get(length, {}), mock.get(length, {})
            rows.append(
                [
                    f"{length:,}",
                    lat(on_wire.get("get")),
                    lat(on_wire.get("last20")) if on_wire.get("last20") else "not available",
                    lat(on_mock.get("get")),
                    lat(on_mock.get("last20")) if on_mock.get("last20") else "not available",
                    lat(on_wire.get("to_openai") or on_mock.get("to_openai")),
                ]
            )
        lines += table(
            [
                "Messages in thread",
                "Whole, wire",
                "`last=20`, wire",
                "Whole, mongomock",
                "`last=20`, mongomock",
                "`to_openai()`",
            ],
            rows,
        )
    if wire:
        lines += [
            "Round trips / bytes sent / bytes received per operation on the wire "
            "(command monitoring):",
            "",
        ]
        lines += table(
            ["Messages in thread", "Post", "Floor", "Read whole", "Read `last=20`"],
            [
                [
                    f"{length:,}",
                    traffic(row.get("post_traffic")),
                    traffic(row.get("floor_traffic")),
                    traffic(row.get("get_traffic")),
                    traffic(row.get("last20_traffic"))
                    if row.get("last20_traffic")
                    else "not available",
                ]
                for length, row in sorted(wire.items())
            ],
        )
    return lines + _plots(page, wire, mock)


def _plots(
    page: Page, wire: dict[int, dict[str, Any]], mock: dict[int, dict[str, Any]]
) -> list[str]:
    """Section 1's plots: latency beside the original and the peers, and bytes."""
    # Imported here: both modules import this one for its rows.
    from bench import original, peers

    paired = original.paired_posts(page)
    langchain, agents = peers.peer_rows(page, "langchain"), peers.peer_rows(page, "agents")
    lines = []
    if wire or mock:
        series = [
            _line("threadmem-mongo post, SecantusDB", wire, "post"),
            _line("raw pymongo $push floor, SecantusDB", wire, "floor"),
            _line("raw pymongo, same command as post, SecantusDB", wire, "same", if_measured=True),
            _line("threadmem-mongo post, mongomock", mock, "post"),
            _line("original threadmem post, SQLite", paired, "original"),
            _line("langchain-mongodb add_message, SecantusDB", langchain, "append"),
            _line("openai-agents MongoDBSession.add_items, SecantusDB", agents, "append"),
        ]
        lines.append(
            page.plot(
                "bench-post-latency.png",
                lambda path: plots.latency_plot(
                    path,
                    "One post (append one message) vs thread length",
                    series,
                    ylabel=f"ms per post (median, min{DASH}max)",
                ),
            )
        )
    if wire:
        byte_series = [
            _line("threadmem-mongo post", wire, "post_traffic", bytes_of=True),
            _line("raw pymongo $push floor", wire, "floor_traffic", bytes_of=True),
            _line("threadmem-mongo read whole thread", wire, "get_traffic", bytes_of=True),
            _line(
                "threadmem-mongo read last=20",
                wire,
                "last20_traffic",
                bytes_of=True,
                if_measured=True,
            ),
            _line("langchain-mongodb add_message", langchain, "append_traffic", bytes_of=True),
            _line("openai-agents add_items", agents, "append_traffic", bytes_of=True),
        ]
        lines.append(
            page.plot("bench-post-bytes.png", lambda path: plots.bytes_plot(path, byte_series))
        )
    return lines


def _line(
    label: str,
    rows: dict[int, dict[str, Any]],
    key: str,
    *,
    bytes_of: bool = False,
    if_measured: bool = False,
) -> tuple[str, list[int], list[Any]]:
    """One line of a plot: each row's ``key`` (its bytes, with ``bytes_of``) by thread
    length; with ``if_measured``, only the rows that have it."""
    kept = {length: row for length, row in rows.items() if not if_measured or row.get(key)}
    values = [_bytes(row.get(key)) if bytes_of else row[key] for row in kept.values()]
    return label, list(kept), values


def _bytes(window: dict[str, Any] | None) -> float:
    """Bytes sent and received in a command-monitoring window; NaN if not measured."""
    if not window:
        return float("nan")
    return float(window["bytes_sent"] + window["bytes_received"])


def render_floor(page: Page) -> list[str]:
    """Section 4: the post as a paired ratio to raw pymongo, against the target."""
    lines = [
        "## 4. The floor: raw pymongo",
        "",
        'The floor is `collection.update_one({"_id": id}, {"$push": {"messages": m}})` '
        "with the very subdocument the library stores, into a copy of the same thread in "
        "the same collection (same indexes), on the same server. The library's post does "
        "more in that one round trip: its filter skips a message id already present (a "
        "retried post lands once) and checks the size budget, and its update also bumps "
        "`version`, `message_count` and `size_bytes`"
        f"{_post_command(page, 'the post sends ')}. "
        f"Target: within {TARGET_RATIO}x. The target is about a server: mongomock "
        "implements `find_one_and_update` in Python with extra copies of the document, "
        "so its ratios describe mongomock, not the library.",
        "",
    ]
    rows = []
    for label, key in (("SecantusDB", "post_cost_wire"), ("mongomock", "post_cost_mongomock")):
        for length, row in sorted(post_rows(page, key).items()):
            verdict = "yes" if row["ratio"]["median"] <= TARGET_RATIO else "**no**"
            rows.append(
                [
                    label,
                    f"{length:,}",
                    times(row["ratio"]),
                    verdict,
                    times(row.get("ratio_same")),
                    times(row.get("same_floor")),
                ]
            )
    if not rows:
        return [*lines, "No data.", ""]
    return lines + table(
        [
            "Server",
            "Messages in thread",
            "Post ÷ floor (paired)",
            f"Median within {TARGET_RATIO}x",
            "Post ÷ same command, raw",
            "Same command ÷ floor",
        ],
        rows,
    )
