"""Section 9: long threads with overflow pages, and the targets they are held to.

A thread keeps its newest messages inline (``max_inline_messages``, 100 by default) and
moves the oldest to page documents, so a post should cost about the same at 200 and at
20,000 messages. This section measures, on the wire server the harness started:

* the post cost curve with default limits, beside the same curve with overflow off
  (``max_inline_messages=None``, every message inline) at the lengths where that is
  still affordable; every thread gets its posts in turn, the order rotating from one
  post to the next, so the server's drift over its life hits every length alike and
  each repetition gives one paired ratio to the shortest thread;
* against the original ``threadmem`` 0.2.39 (its venv, as in section 2): batches of
  posts at 5,000 messages and of 500 posts into a new thread, ours and theirs in turn;
* the commands of reading the newest 20 messages and a whole long thread, from the
  harness's command listener;

and checks every target against what it measured.
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import plots
from bench.markdown import lat, reason, table, times
from bench.measure import summary, timed
from bench.page import Page, measured
from bench.plan import TEXT, prefill_messages
from bench.targets import Target, post
from bench.venvs import LineDriver, NotRunError, ensure_venv
from threadmem_mongo import RoleThread, ThreadStore
from threadmem_mongo._pages import DEFAULT_MAX_INLINE_MESSAGES

COLLECTION = "overflow"
INLINE_COLLECTION = "overflow_inline"
ORIGINAL_COLLECTION = "overflow_original"

#: The targets: a post at the longest length ÷ at the shortest; ours ÷ the original's
#: post at 5,000 messages; ours ÷ theirs for posting into a new thread; the commands of
#: reading the newest 20 messages.
TARGET_FLAT = 1.5
TARGET_ORIGINAL_POST = 0.1
TARGET_ORIGINAL_POST_NEW = 0.67
TARGET_LAST20_COMMANDS = 1
LAST = 20


@dataclass(frozen=True)
class Sizes:
    """Sizes and repetitions of the section."""

    #: Thread lengths of the curve with default limits; the first is the ratio's base.
    lengths: tuple[int, ...]
    #: Lengths also measured with overflow off (every message inline).
    inline_lengths: tuple[int, ...]
    #: The length whose post is divided by the first length's for the flatness target.
    flat_length: int
    #: Timed posts per thread per repetition: 50 holds exactly one move to a page
    #: (one post in 50 moves the oldest 50 inline messages).
    posts_per_rep: int
    reps: int
    #: The original: thread length of the paired posts, posts per batch, repetitions.
    original_length: int
    original_batch: int
    original_reps: int
    #: Posts into a new thread, and repetitions.
    post_new: int
    post_new_reps: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FULL = Sizes(
    lengths=(200, 1000, 5000, 20000),
    inline_lengths=(200, 1000, 5000),
    flat_length=20000,
    posts_per_rep=50,
    reps=5,
    original_length=5000,
    original_batch=5,
    original_reps=5,
    post_new=500,
    post_new_reps=3,
)
LONG = dataclasses.replace(FULL, lengths=(*FULL.lengths, 50000, 100000))
SMOKE = Sizes(
    lengths=(200, 2000),
    inline_lengths=(200,),
    flat_length=2000,
    posts_per_rep=10,
    reps=2,
    original_length=500,
    original_batch=2,
    original_reps=2,
    post_new=50,
    post_new_reps=2,
)


def sizes_for(mode: str, long: bool) -> Sizes:
    """The sizes of a run: smoke, full, or full with the curve up to 100,000 messages."""
    if mode == "smoke":
        return SMOKE
    return LONG if long else FULL


def _store(target: Target, name: str, *, inline: bool) -> ThreadStore:
    collection = target.collection(name)
    store = ThreadStore(collection, max_inline_messages=None) if inline else ThreadStore(collection)
    store.ensure_indexes()
    return store


def overflow(target: Target, sizes: Sizes, original_skip: str | None) -> dict[str, Any]:
    """Measure the section; ``original_skip`` says why the original is not run, if so."""
    result: dict[str, Any] = {"sizes": sizes.as_dict(), "limit": DEFAULT_MAX_INLINE_MESSAGES}
    result["curve"] = _curve(target, sizes)
    result["commands"] = _commands(target, sizes)
    if original_skip:
        result["original"] = {"not_run": original_skip}
    else:
        try:
            result["original"] = _versus_original(target, sizes)
        except NotRunError as exc:
            result["original"] = {"not_run": str(exc)}
    return result


def _curve(target: Target, sizes: Sizes) -> dict[str, Any]:
    """Posts at every length, paged and inline, in turns; paired ratios per repetition."""
    paged_store = _store(target, COLLECTION, inline=False)
    inline_store = _store(target, INLINE_COLLECTION, inline=True)
    calls: dict[tuple[str, int], Callable[[], None]] = {}
    builds: dict[str, float] = {}
    threads: dict[str, str] = {}
    for kind, store, lengths in (
        ("paged", paged_store, sizes.lengths),
        ("inline", inline_store, sizes.inline_lengths),
    ):
        for length in lengths:
            start = time.perf_counter()
            thread = RoleThread.from_openai(prefill_messages(length), owner_id="bench", store=store)
            builds[f"{kind}:{length}"] = time.perf_counter() - start
            threads[f"{kind}:{length}"] = thread.id
            calls[kind, length] = functools.partial(post, thread)
    for call in calls.values():  # warm: the first write of each
        call()
    keys = list(calls)
    samples: dict[tuple[str, int], list[float]] = {key: [] for key in keys}
    to_base: dict[tuple[str, int], list[float]] = {key: [] for key in keys}
    inline_to_paged: dict[int, list[float]] = {n: [] for n in sizes.inline_lengths}
    base = sizes.lengths[0]
    for _rep in range(sizes.reps):
        totals = dict.fromkeys(keys, 0.0)
        for i in range(sizes.posts_per_rep):
            shift = i % len(keys)
            for key in keys[shift:] + keys[:shift]:
                totals[key] += timed(calls[key])
        for key in keys:
            samples[key].append(totals[key] / sizes.posts_per_rep)
            to_base[key].append(totals[key] / totals["paged", base])
        for length in sizes.inline_lengths:
            if ("paged", length) in totals:
                inline_to_paged[length].append(totals["inline", length] / totals["paged", length])
    rows = []
    for kind, length in keys:
        row: dict[str, Any] = {
            "kind": kind,
            "length": length,
            "build_seconds": builds[f"{kind}:{length}"],
            "post": summary(samples[kind, length]),
            "to_base": summary(to_base[kind, length]),
        }
        if kind == "inline" and inline_to_paged.get(length):
            row["to_paged"] = summary(inline_to_paged[length])
        rows.append(row)
    return {"rows": rows, "base": base, "threads": threads}


def _commands(target: Target, sizes: Sizes) -> dict[str, Any]:
    """Commands of the newest 20 messages and of the whole thread, per paged length."""
    log = target.log
    store = target.monitored_store(COLLECTION)
    if log is None or store is None:
        return {"not_run": f"{target.label} has no command monitoring"}
    collection = target.collection(COLLECTION)
    rows = []
    for length in sorted({sizes.lengths[0], sizes.flat_length, sizes.lengths[-1]}):
        thread = RoleThread.from_openai(prefill_messages(length), owner_id="count", store=store)
        stored = collection.find_one({"_id": thread.id}, {"page_count": 1})
        pages = int((stored or {}).get("page_count", 0))
        with log.window() as last_window:
            newest = RoleThread.get(thread.id, store=store, last=LAST)
        with log.window() as whole_window:
            whole = RoleThread.get(thread.id, store=store)
        with log.window() as post_window:
            for _ in range(sizes.posts_per_rep):
                post(whole)
        rows.append(
            {
                "length": length,
                "pages": pages,
                "last": last_window.as_dict(),
                "last_read": len(newest.messages()),
                "whole": whole_window.as_dict(),
                "whole_read": len(whole.messages()) - sizes.posts_per_rep,
                "posts": sizes.posts_per_rep,
                "post_commands": post_window.round_trips,
            }
        )
    return {"rows": rows}


def _sqlite_env(home: str) -> dict[str, str]:
    """Where the original keeps its SQLite file: a temporary directory (as in section 2)."""
    return {
        "AGENTSEA_HOME": home,
        "AGENTSEA_DB_DIR": f"{home}/data",
        "THREADS_DB_NAME": "threads.db",
        "DB_TYPE": "sqlite",
        "AGENTSEA_DB_TEST": "false",
    }


def _versus_original(target: Target, sizes: Sizes) -> dict[str, Any]:
    """Batches of the original's posts and ours in turn, order swapped each repetition.

    Raises:
        NotRunError: The original's venv could not be built or its driver failed.
    """
    from bench.original import REQUIREMENT, VENV

    python = ensure_venv(VENV, [REQUIREMENT], ["threadmem"])
    store = target.store(ORIGINAL_COLLECTION)
    with (
        tempfile.TemporaryDirectory(prefix="threadmem-bench-sqlite-") as home,
        LineDriver(
            python, "bench.drivers.original", {"text": TEXT}, env=_sqlite_env(home)
        ) as driver,
    ):
        length = sizes.original_length
        driver.call({"op": "prepare", "length": length})
        thread = RoleThread.from_openai(prefill_messages(length), owner_id="bench", store=store)
        post(thread)  # warm

        def ours_posts() -> float:
            start = time.perf_counter()
            for _ in range(sizes.original_batch):
                post(thread)
            return time.perf_counter() - start

        def theirs_posts() -> float:
            answer = driver.call({"op": "posts", "length": length, "count": sizes.original_batch})
            return float(answer["seconds"])

        def ours_new() -> float:
            fresh = RoleThread(owner_id="bench", store=store)
            start = time.perf_counter()
            for _ in range(sizes.post_new):
                post(fresh)
            return time.perf_counter() - start

        def theirs_new() -> float:
            answer = driver.call({"op": "post_new", "count": sizes.post_new})
            return float(answer["seconds"])

        at_length = _paired(ours_posts, theirs_posts, sizes.original_reps, sizes.original_batch)
        new_thread = _paired(ours_new, theirs_new, sizes.post_new_reps, 1)
    return {"at_length": at_length, "post_new": new_thread}


def _paired(
    ours: Callable[[], float], theirs: Callable[[], float], reps: int, per_batch: int
) -> dict[str, Any]:
    ours_seconds: list[float] = []
    theirs_seconds: list[float] = []
    ratios: list[float] = []
    for rep in range(reps):
        if rep % 2 == 0:
            mine, other = ours(), theirs()
        else:
            other, mine = theirs(), ours()
        ours_seconds.append(mine / per_batch)
        theirs_seconds.append(other / per_batch)
        ratios.append(mine / other)
    return {
        "ours": summary(ours_seconds),
        "original": summary(theirs_seconds),
        "ratio": summary(ratios),
    }


# -- the page -----------------------------------------------------------------------------


def targets(section: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """Each target as (what, target, measured, verdict), from what the section measured."""
    if section is None or reason(section):
        return []
    sizes = section["sizes"]
    checks: list[tuple[str, str, str, str]] = []
    curve = section.get("curve") or {}
    by_key = {(row["kind"], row["length"]): row for row in curve.get("rows", [])}
    flat = by_key.get(("paged", sizes["flat_length"]))
    if flat:
        checks.append(
            (
                f"post at {sizes['flat_length']:,} ÷ post at {curve['base']:,} messages (paired)",
                f"≤ {TARGET_FLAT}x",
                times(flat["to_base"]),
                _verdict(flat["to_base"]["median"] <= TARGET_FLAT),
            )
        )
    original = section.get("original") or {}
    why = reason(original)
    for key, what, goal in (
        (
            "at_length",
            f"one post at {sizes['original_length']:,} messages, ours ÷ original",
            TARGET_ORIGINAL_POST,
        ),
        (
            "post_new",
            f"{sizes['post_new']:,} posts into a new thread, ours ÷ original",
            TARGET_ORIGINAL_POST_NEW,
        ),
    ):
        if why:
            checks.append((what, f"≤ {goal}x", why, "not run"))
        else:
            ratio = original[key]["ratio"]
            checks.append((what, f"≤ {goal}x", times(ratio), _verdict(ratio["median"] <= goal)))
    commands = section.get("commands") or {}
    for row in commands.get("rows", []):
        length, last = row["length"], row["last"]["round_trips"]
        checks.append(
            (
                f"commands of the newest {LAST} at {length:,} messages",
                f"{TARGET_LAST20_COMMANDS}",
                f"{last}",
                _verdict(last <= TARGET_LAST20_COMMANDS and row["last_read"] == LAST),
            )
        )
    for row in commands.get("rows", []):
        if row["length"] != sizes["flat_length"]:
            continue
        whole, pages = row["whole"]["round_trips"], row["pages"]
        allowed = 2 + pages / 100
        checks.append(
            (
                f"commands of the whole {row['length']:,}-message thread ({pages:,} pages)",
                f"≤ 2 + pages/100 = {allowed:g}",
                f"{whole}",
                _verdict(whole <= allowed and row["whole_read"] == row["length"]),
            )
        )
    return checks


def _verdict(passed: bool) -> str:
    return "pass" if passed else "**miss**"


@measured("## 9. Long threads: overflow pages", "overflow", "Long threads (overflow pages)")
def render(page: Page, section: dict[str, Any]) -> list[str]:
    """Section 9: the targets, the post cost curve, command counts, the original, a plot."""
    sizes = section["sizes"]
    curve = section["curve"]
    base = curve["base"]
    moves = (
        " (so each paged thread's mean includes the one post in 50 that moves a page)"
        if sizes["posts_per_rep"] % 50 == 0
        else ""
    )
    lines = [
        "A thread keeps its newest messages inline and moves the oldest to overflow page "
        f"documents once it holds more than {section['limit']} (`max_inline_messages`, "
        "the default). One thread per length is built in one call "
        "(`RoleThread.from_openai`, which stores the older messages as pages at once), "
        "with the default limits and, at the lengths where every message inline is still "
        "affordable on this server, with overflow off (`max_inline_messages=None`). Every "
        "thread then gets one post in turn, the order rotating from one post to the next, "
        f"{sizes['posts_per_rep']} posts per thread per repetition{moves}, "
        f"{sizes['reps']} repetitions. "
        f"*÷ paged at {base:,}* is each repetition's mean divided by that of the paged "
        f"thread of {base:,} messages in the same repetition (paired), so the server's "
        "drift over its life hits every length alike. Medians, min and max in brackets. "
        "Lengths are those the thread had when the timed posts started.",
        "",
    ]
    checks = targets(section)
    lines += ["**Targets**, each checked against this run:", ""]
    lines += table(["What", "Target", "Measured", "Verdict"], checks)
    rows = []
    for row in curve["rows"]:
        label = "default limits" if row["kind"] == "paged" else "overflow off (all inline)"
        rows.append(
            [
                f"{row['length']:,}",
                label,
                lat(row["post"]),
                times(row["to_base"]),
                times(row.get("to_paged")),
                f"{row['build_seconds']:.2f} s",
            ]
        )
    lines += ["**One post**, by thread length:", ""]
    lines += table(
        [
            "Messages in thread",
            "Limits",
            "Post",
            f"÷ paged at {base:,} (paired)",
            "overflow off ÷ default (paired)",
            "Build (one call)",
        ],
        rows,
    )
    peer_series = _peer_series(page.sections.get("peers"))
    if peer_series:
        lengths = sorted({x for _label, xs, _stats in peer_series for x in xs})
        lines += [
            "The peer stores' appends from section 3 (another process, another point of the "
            f"server's life; measured at {', '.join(f'{n:,}' for n in lengths)} messages) "
            "are drawn beside the curves; their paired ratios are in section 3.",
            "",
        ]
    commands = section.get("commands") or {}
    why = reason(commands)
    if why:
        page.note_missing("Overflow command counts", why)
        lines += [f"Command counts: {why}.", ""]
    else:
        lines += [
            "**Commands** (the harness's command listener; a thread built for counting, "
            "then read and posted to through the monitored client):",
            "",
        ]
        lines += table(
            [
                "Messages in thread",
                "Pages",
                f"newest {LAST} (`get(id, last={LAST})`)",
                "whole thread (`get(id)`)",
                "messages read whole",
                "posts",
                "their commands",
            ],
            [
                [
                    f"{row['length']:,}",
                    f"{row['pages']:,}",
                    _commands_cell(row["last"]),
                    _commands_cell(row["whole"]),
                    f"{row['whole_read']:,}",
                    row["posts"],
                    row["post_commands"],
                ]
                for row in commands["rows"]
            ],
        )
    original = section.get("original") or {}
    why = reason(original)
    if why:
        page.note_missing("Overflow section against the original threadmem", why)
        lines += [f"Against the original threadmem 0.2.39: {why}.", ""]
    else:
        lines += [
            "**Against the original threadmem 0.2.39** (SQLite, in its venv, as in section "
            "2): batches of the original's posts and ours (on the wire server, default "
            "limits) in turn, order swapped each repetition; each pair gives one ratio. "
            "Below 1 = threadmem-mongo faster.",
            "",
        ]
        lines += table(
            ["Workload", "Original (SQLite)", "threadmem-mongo (SecantusDB)", "ours ÷ original"],
            [
                [
                    f"one post at {sizes['original_length']:,} messages "
                    f"({sizes['original_reps']} batches of {sizes['original_batch']})",
                    lat(original["at_length"]["original"]),
                    lat(original["at_length"]["ours"]),
                    times(original["at_length"]["ratio"]) + " paired",
                ],
                [
                    f"{sizes['post_new']:,} posts into a new thread (total, "
                    f"{sizes['post_new_reps']} repetitions)",
                    lat(original["post_new"]["original"]),
                    lat(original["post_new"]["ours"]),
                    times(original["post_new"]["ratio"]) + " paired",
                ],
            ],
        )
    lines.append(page.plot("bench-overflow.png", _plotter(curve, peer_series)))
    return lines


def _commands_cell(window: dict[str, Any]) -> str:
    return f"{window['round_trips']} ({', '.join(window['commands'])})"


def _peer_series(peers: dict[str, Any] | None) -> list[tuple[str, list[float], list[Any]]]:
    if not peers or reason(peers):
        return []
    series = []
    for key, label in (
        ("langchain", "langchain-mongodb add_message (section 3)"),
        ("agents", "agents MongoDBSession add_items (section 3)"),
    ):
        part = peers.get(key)
        if not part or reason(part):
            continue
        rows = [row for row in part.get("rows", []) if row.get("append")]
        series.append((label, [row["length"] for row in rows], [row["append"] for row in rows]))
    return series


def _plotter(
    curve: dict[str, Any], peer_series: list[tuple[str, list[float], list[Any]]]
) -> Callable[[Any], Any]:
    series = []
    for kind, label in (("paged", "threadmem-mongo, default limits"), ("inline", "overflow off")):
        rows = [row for row in curve["rows"] if row["kind"] == kind]
        series.append((label, [row["length"] for row in rows], [row["post"] for row in rows]))
    title = "One post versus thread length (wire server)"
    return lambda path: plots.latency_plot(
        path, title, [*series, *peer_series], ylabel="ms per post"
    )


def headline(page: Page) -> str:
    """The headline's line: the targets met and missed."""
    return f"- **Long threads (overflow pages)**: {_targets_met(page.sections.get('overflow'))}."


def _targets_met(section: dict[str, Any] | None) -> str:
    why = reason(section)
    if why:
        return why
    checks = targets(section)
    measured = [check for check in checks if check[3] != "not run"]
    met = sum(1 for check in measured if check[3] == "pass")
    missed = [check[0] for check in measured if check[3] != "pass"]
    text = f"{met} of {len(measured)} targets measured met (section 9)"
    if missed:
        text += "; **missed**: " + "; ".join(missed)
    if len(measured) < len(checks):
        text += f"; {len(checks) - len(measured)} not run"
    return text
