"""Writes ``benchmarks.md`` and the ``bench-*.png`` plots from a run's results."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

TARGET_RATIO = 1.2
PAGE = "benchmarks.md"
#: The en dash of ranges ("1.0 ms\u20132.0 ms").
DASH = "\u2013"

Stats = dict[str, float]


# -- formatting ---------------------------------------------------------------------------


def _seconds(value: float) -> str:
    if value >= 1.0:
        return f"{value:.2f} s"
    ms = value * 1000
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    if ms >= 0.1:
        return f"{ms:.2f} ms"
    return f"{ms * 1000:.0f} µs"


def lat(stats: Stats | None) -> str:
    """``median (min to max)`` of seconds."""
    if not stats:
        return "—"
    return f"{_seconds(stats['median'])} ({_seconds(stats['min'])}{DASH}{_seconds(stats['max'])})"


def _factor(value: float) -> str:
    """Two decimals, or two significant digits below 0.1."""
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"


def times(stats: Stats | None) -> str:
    if not stats:
        return "—"
    return f"{_factor(stats['median'])}x ({_factor(stats['min'])}{DASH}{_factor(stats['max'])})"


def plain(stats: Stats | None, digits: int = 1) -> str:
    if not stats:
        return "—"
    low, high = f"{stats['min']:.{digits}f}", f"{stats['max']:.{digits}f}"
    return f"{stats['median']:.{digits}f} ({low}{DASH}{high})"


def count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def quotient(a: Stats | None, b: Stats | None) -> str:
    """Ratio of two medians measured in the same run (not paired)."""
    if not a or not b or not b["median"]:
        return "—"
    return f"{_factor(a['median'] / b['median'])}x"


def table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def reason(section: dict[str, Any] | None) -> str | None:
    """Why a section produced nothing, or None if it did."""
    if section is None:
        return "not run"
    if "not_run" in section:
        return f"not run: {section['not_run']}"
    if "failed" in section:
        return f"failed: {section['failed']}"
    return None


def _rows_by_length(section: dict[str, Any] | None) -> dict[int, dict[str, Any]]:
    if not section or reason(section):
        return {}
    return {row["length"]: row for row in section.get("rows", [])}


def _traffic(window: dict[str, Any] | None) -> str:
    if not window:
        return "—"
    return f"{window['round_trips']} / {window['bytes_sent']:,} / {window['bytes_received']:,}"


# -- sections -----------------------------------------------------------------------------


class Page:
    def __init__(self, results: dict[str, Any], out: Path) -> None:
        self.results = results
        self.meta: dict[str, Any] = results["meta"]
        self.plan: dict[str, Any] = results["plan"]
        self.sections: dict[str, Any] = results["sections"]
        self.out = out
        self.lines: list[str] = []
        self.missing: list[str] = []
        self.plots: list[Path] = []
        self.wire = _rows_by_length(self.sections.get("post_cost_wire"))
        self.mock = _rows_by_length(self.sections.get("post_cost_mongomock"))
        original = self.sections.get("original")
        self.original = _rows_by_length(original)
        self.original_posts: dict[int, dict[str, Any]] = (
            {row["length"]: row for row in original.get("paired", [])}
            if original and not reason(original)
            else {}
        )
        peers = self.sections.get("peers") or {}
        self.langchain = _rows_by_length(peers.get("langchain")) if not reason(peers) else {}
        self.agents = _rows_by_length(peers.get("agents")) if not reason(peers) else {}

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def note_missing(self, what: str, why: str) -> None:
        self.missing.append(f"- **{what}**: {why}")

    def plot(self, name: str, build: Any) -> str:
        path = self.out / name
        try:
            build(path)
        except ImportError as exc:
            self.note_missing(f"plot {name}", f"not drawn: {exc} (pip install matplotlib)")
            return ""
        self.plots.append(path)
        return f"![{name}]({name})\n"

    # -- the page --------------------------------------------------------------------------

    def build(self) -> str:
        self.header()
        self.headline()
        self.machine()
        self.reproduce()
        self.method()
        self.post_cost()
        self.original_section()
        self.peers_section()
        self.floor_section()
        self.ops_section()
        self.concurrency_section()
        self.memory_section()
        self.adapters_section()
        self.overflow_section()
        self.not_run()
        return "\n".join(self.lines).rstrip() + "\n"

    def header(self) -> None:
        smoke = self.plan["mode"] == "smoke"
        self.add(
            "# Benchmarks",
            "",
            "threadmem-mongo side by side with the original `threadmem`, peer MongoDB chat "
            "stores, and raw pymongo as the floor. This page is written by `python -m bench`; "
            "do not edit it by hand.",
            "",
            f"Run: **{self.plan['mode']}** (`{self.results['command']}`), "
            f"{self.meta['date']}, commit {self.meta['git']}, "
            f"{self.results['elapsed']:.0f} s in all.",
            "",
        )
        if smoke:
            self.add(
                "> **Smoke run.** Small threads and few repetitions, to check that the harness "
                "works. Do not quote these figures; run `python -m bench` for the real page.",
                "",
            )
        self.add(
            "> **The server.** The wire figures come from SecantusDB, a MongoDB wire-protocol "
            "server written in Python that the harness starts on a free loopback port. Its "
            "cost per update grows with the size of the document (a `$push` to a thread of "
            "5,000 messages costs it far more than to one of 10), which a real `mongod` does "
            "not do to the same degree. Absolute latencies at long thread lengths are "
            "therefore the server's; the raw pymongo floor pays the same cost on the same "
            "document, so **the ratio to the floor is the figure that carries over**. Thread "
            f"lengths here: {', '.join(f'{n:,}' for n in self.plan['lengths'])} messages"
            + (" (smoke mode keeps them small for that reason)." if smoke else ".")
            + " Run `python -m bench --uri mongodb://...` to measure a real `mongod`.",
            "",
        )
        if "SecantusDB" in self.meta["server_kind"]:
            self.add(
                "> **Retryable writes are off** (`retryWrites=false`) for every client of the "
                "wire server, ours and the peers' alike. SecantusDB "
                f"{self.meta['secantusdb']} slows down as it accumulates retryable-write "
                "records: after about 10,000 writes in one server's life an insert goes "
                "from under 1 ms to about 7 ms, even once the database is dropped, which "
                "would charge each section for the writes of the ones before it. With "
                "retryable writes on, each write command also carries a `txnNumber` (a few "
                "more bytes than the figures below). A URI given with `--uri` is used as "
                "it is.",
                "",
            )

    def headline(self) -> None:
        self.add("## Headline", "")
        if self.wire:
            parts = [
                f"{times(row['ratio'])} at {length:,} messages"
                for length, row in sorted(self.wire.items())
            ]
            over = [
                f"{length:,}"
                for length, row in sorted(self.wire.items())
                if row["ratio"]["median"] > TARGET_RATIO
            ]
            verdict = (
                f"**over the {TARGET_RATIO}x target at {', '.join(over)} messages**, within "
                "it elsewhere"
                if over
                else f"within the {TARGET_RATIO}x target at every length"
            )
            self.add(
                "- **Post vs raw pymongo floor (ratio to raw pymongo `update_one` `$push`, "
                f"same message, same server, same thread length)**: {'; '.join(parts)} — "
                f"{verdict}.",
            )
        else:
            why = reason(self.sections.get("post_cost_wire")) or "no data"
            self.add(f"- **Post vs raw pymongo floor (ratio to raw pymongo)**: {why}.")
        self.add(f"- **Post vs the original threadmem 0.2.39 (SQLite)**: {self._vs_original()}.")
        from bench import overflow

        long_threads = overflow.headline(self.sections.get("overflow"))
        self.add(f"- **Long threads (overflow pages)**: {long_threads}.")
        concurrency = self.sections.get("concurrency") or {}
        if not reason(concurrency):
            posts = sum(r["posts"] for r in concurrency["rows"])
            lost = sum(r["lost"] + r["missing"] for r in concurrency["rows"])
            self.add(
                f"- **Concurrent writers**: {lost} messages lost out of {posts:,} posted by "
                f"1{DASH}{max(self.plan['writers'])} writers (threads and processes), checked "
                "by reading every thread back.",
            )
        self.add("")

    def _vs_original(self) -> str:
        why = reason(self.sections.get("original"))
        if why:
            return why
        lengths = sorted(self.original_posts)
        if not lengths:
            return "no data"
        length = 1000 if 1000 in lengths else lengths[-1]
        row = self.original_posts[length]
        mock = self.mock.get(length, {}).get("post")
        text = (
            f"at {length:,} messages one post takes {_seconds(row['ours']['median'])} here on "
            f"SecantusDB against {_seconds(row['original']['median'])} for the original on "
            f"SQLite, batches of each in turn: ratio {times(row['ratio'])} "
            "(paired; below 1 = threadmem-mongo faster)"
        )
        if mock:
            text += (
                f"; on mongomock {_seconds(mock['median'])}, "
                f"{quotient(mock, row['original'])} of the original"
            )
        return text

    def machine(self) -> None:
        meta = self.meta
        self.add("## Machine", "")
        self.add(
            *table(
                ["Item", "Value"],
                [
                    ["When", meta["date"]],
                    [
                        "Load average (1 min) at start / end",
                        f"{meta.get('load_start', '?')} / {self.results.get('load_end', '?')}",
                    ],
                    ["Platform", meta["platform"]],
                    ["CPU", f"{meta['cpu']}, {meta['cpu_count']} logical CPUs"],
                    ["Python", f"{meta['implementation']} {meta['python']}"],
                    ["pymongo", meta["pymongo"]],
                    ["mongomock", meta["mongomock"]],
                    [
                        "Server",
                        f"{meta['server_kind']}; reports version {meta['server']}"
                        + (
                            f"; SecantusDB package {meta['secantusdb']}"
                            if "SecantusDB" in meta["server_kind"]
                            else ""
                        ),
                    ],
                    ["threadmem-mongo", f"{meta['threadmem_mongo']}, commit {meta['git']}"],
                    ["Original threadmem", self._original_versions()],
                    ["Peers", self._peer_versions()],
                ],
            )
        )

    def _original_versions(self) -> str:
        section = self.sections.get("original") or {}
        if reason(section):
            return reason(section) or ""
        versions = section.get("versions", {})
        return ", ".join(f"{k} {v}" for k, v in versions.items()) + " (own venv)"

    def _peer_versions(self) -> str:
        section = self.sections.get("peers") or {}
        if reason(section):
            return reason(section) or ""
        parts = []
        for key, name in (("langchain", "langchain-mongodb"), ("agents", "openai-agents")):
            peer = section.get(key) or {}
            parts.append(
                f"{name} {peer.get('version', '?')}"
                if not reason(peer)
                else f"{name}: {reason(peer)}"
            )
        return "; ".join(parts) + f" (in {section.get('where', '?')})"

    def reproduce(self) -> None:
        self.add(
            "## How to reproduce",
            "",
            "```sh",
            "pip install -e '.[bench]'           # matplotlib, mongomock, secantusdb",
            "python -m bench --out docs/         # the full run; writes this page and the plots",
            "python -m bench --smoke --out /tmp/bench   # seconds; what CI runs",
            "python -m bench --uri 'mongodb://127.0.0.1:27017/?directConnection=true'"
            "  # a real mongod",
            "```",
            "",
            "The harness starts its own SecantusDB server (`secantusd-py` beside the Python "
            "executable) on a free loopback port with its data in a temporary directory, and "
            "stops it at the end. The original `threadmem==0.2.39` and the peer stores "
            "(`langchain-mongodb`, `openai-agents[mongodb]`) conflict with this project's "
            "dependencies or bring pytest plugins, so each gets its own virtualenv under "
            "`~/.cache/threadmem-bench/` (or `$THREADMEM_BENCH_CACHE`), built with pip on "
            "first use and reused after; the benchmark then drives it through a driver script "
            "in `bench/drivers/` that prints JSON. Nothing else is fetched. Without the "
            "package registry those parts are reported as not run. `--smoke` skips them "
            "unless `--with-peers` is given.",
            "",
        )

    def method(self) -> None:
        p = self.plan
        self.add(
            "## Method",
            "",
            f"- Every latency is the **median of {p['reps']} repetitions, with the min and "
            f"max in brackets**; a repetition is the mean of {p['posts_per_rep']} operations. "
            f'"Post N" workloads are repeated {p["post_n_reps"]} times.',
            "- **Ratios are measured in the same run.** Against the floor they are paired: "
            "the library's posts and the floor's pushes alternate (order swapped every other "
            "pair) and each repetition gives one ratio; the table shows the median and range "
            "of those ratios. Other ratios divide medians taken in the same run.",
            "- A thread of L messages is stored in one write (`RoleThread.from_openai`; for "
            "the original, `RoleThread.from_v1(...).save()`), then the timed posts add to it. "
            "Every message is the same ~200-byte text.",
            "- Timings use a client without monitoring. Round trips and bytes come from a "
            "second client with a `pymongo.monitoring.CommandListener`: bytes are "
            "`len(bson.encode(event.command))` and `len(bson.encode(event.reply))`, i.e. the "
            "BSON of each command and reply without the few bytes of OP_MSG framing. They "
            "are deterministic.",
            "- mongomock runs in process: it has no wire, so it has latencies but no bytes.",
            "- The machine may be shared with other work (see the load average above): "
            "paired ratios are robust to that, quotients of medians taken minutes apart are "
            "not.",
            "",
        )

    def post_cost(self) -> None:
        self.add("## 1. Post cost versus thread length", "")
        self.add(
            "Three writers take turns on three copies of the same thread: the library's "
            "`post`; the floor, raw pymongo `update_one` with `$push` of the same message "
            "subdocument; and raw pymongo sending the library's own post command"
            f"{self._post_command()}, captured by command monitoring and replayed with "
            "the same filter and update. The library moves a thread's oldest messages to "
            "overflow pages past its inline limit; both copies stop growing at that limit "
            "(`$slice` in the same `$push`), so all three update documents of about the same "
            "size. *Post ÷ same command* is what the library's Python "
            "adds; *same command ÷ floor* is what the richer command costs the server.",
            "",
        )
        captured = self.results.get("post_command") or {}
        if captured.get("not_run"):
            self.note_missing("Same command, raw", f"not run: {captured['not_run']}")
        for label, key, data in (
            ("SecantusDB (wire)", "post_cost_wire", self.wire),
            ("mongomock (in process)", "post_cost_mongomock", self.mock),
        ):
            why = reason(self.sections.get(key))
            if why:
                self.add(f"{label}: {why}", "")
                self.note_missing(f"Post cost on {label}", why)
                continue
            same_error = (self.sections.get(key) or {}).get("same_error")
            if same_error and not captured.get("not_run"):
                self.note_missing(f"Same command, raw, on {label}", f"not run: {same_error}")
            self.add(f"**{label}**, one post:", "")
            self.add(
                *table(
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
                        for length, row in sorted(data.items())
                    ],
                )
            )
        if self.wire or self.mock:
            self.add("Reading the thread back (`RoleThread.get`) and converting it:", "")
            rows = []
            for length in sorted(set(self.wire) | set(self.mock)):
                wire, mock = self.wire.get(length, {}), self.mock.get(length, {})
                rows.append(
                    [
                        f"{length:,}",
                        lat(wire.get("get")),
                        lat(wire.get("last20")) if wire.get("last20") else "not available",
                        lat(mock.get("get")),
                        lat(mock.get("last20")) if mock.get("last20") else "not available",
                        lat(wire.get("to_openai") or mock.get("to_openai")),
                    ]
                )
            self.add(
                *table(
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
            )
        if self.wire:
            self.add(
                "Round trips / bytes sent / bytes received per operation on the wire "
                "(command monitoring):",
                "",
            )
            self.add(
                *table(
                    ["Messages in thread", "Post", "Floor", "Read whole", "Read `last=20`"],
                    [
                        [
                            f"{length:,}",
                            _traffic(row.get("post_traffic")),
                            _traffic(row.get("floor_traffic")),
                            _traffic(row.get("get_traffic")),
                            _traffic(row.get("last20_traffic"))
                            if row.get("last20_traffic")
                            else "not available",
                        ]
                        for length, row in sorted(self.wire.items())
                    ],
                )
            )
        from bench import plots

        series = [
            (
                "threadmem-mongo post, SecantusDB",
                list(self.wire),
                [r["post"] for r in self.wire.values()],
            ),
            (
                "raw pymongo $push floor, SecantusDB",
                list(self.wire),
                [r["floor"] for r in self.wire.values()],
            ),
            (
                "raw pymongo, same command as post, SecantusDB",
                [n for n, r in self.wire.items() if "same" in r],
                [r["same"] for r in self.wire.values() if "same" in r],
            ),
            (
                "threadmem-mongo post, mongomock",
                list(self.mock),
                [r["post"] for r in self.mock.values()],
            ),
            (
                "original threadmem post, SQLite",
                list(self.original_posts),
                [r["original"] for r in self.original_posts.values()],
            ),
            (
                "langchain-mongodb add_message, SecantusDB",
                list(self.langchain),
                [r["append"] for r in self.langchain.values()],
            ),
            (
                "openai-agents MongoDBSession.add_items, SecantusDB",
                list(self.agents),
                [r["append"] for r in self.agents.values()],
            ),
        ]
        if self.wire or self.mock:
            self.add(
                self.plot(
                    "bench-post-latency.png",
                    lambda path: plots.latency_plot(
                        path,
                        "One post (append one message) vs thread length",
                        series,
                        ylabel=f"ms per post (median, min{DASH}max)",
                    ),
                )
            )
        byte_series = [
            (
                "threadmem-mongo post",
                list(self.wire),
                [self._bytes(r.get("post_traffic")) for r in self.wire.values()],
            ),
            (
                "raw pymongo $push floor",
                list(self.wire),
                [self._bytes(r.get("floor_traffic")) for r in self.wire.values()],
            ),
            (
                "threadmem-mongo read whole thread",
                list(self.wire),
                [self._bytes(r.get("get_traffic")) for r in self.wire.values()],
            ),
            (
                "threadmem-mongo read last=20",
                [n for n, r in self.wire.items() if r.get("last20_traffic")],
                [
                    self._bytes(r["last20_traffic"])
                    for r in self.wire.values()
                    if r.get("last20_traffic")
                ],
            ),
            (
                "langchain-mongodb add_message",
                list(self.langchain),
                [self._bytes(r.get("append_traffic")) for r in self.langchain.values()],
            ),
            (
                "openai-agents add_items",
                list(self.agents),
                [self._bytes(r.get("append_traffic")) for r in self.agents.values()],
            ),
        ]
        if self.wire:
            self.add(
                self.plot("bench-post-bytes.png", lambda path: plots.bytes_plot(path, byte_series))
            )

    @staticmethod
    def _bytes(window: dict[str, Any] | None) -> float:
        if not window:
            return float("nan")
        return float(window["bytes_sent"] + window["bytes_received"])

    def original_section(self) -> None:
        self.add("## 2. The original threadmem 0.2.39 (SQLite)", "")
        section = self.sections.get("original") or {}
        why = reason(section)
        if why:
            self.add(f"{why}.", "")
            self.note_missing("Original threadmem 0.2.39", why)
            return
        self.add(
            "The original stores a thread as SQLAlchemy rows in its default SQLite file "
            "(pointed at a temporary directory through `AGENTSEA_HOME`/`AGENTSEA_DB_DIR`). "
            "Its `post` appends to the in-memory list and saves the whole thread "
            "(`session.merge` of the thread and every message), so its cost grows with the "
            "thread. Same workloads, same run. For one post at a given length, batches of "
            f"{self.plan['posts_per_rep']} posts of the original and of threadmem-mongo (on the "
            "wire server) alternate, each pair giving one ratio (*paired*); the other rows "
            "divide medians. Below 1 = threadmem-mongo faster.",
            "",
        )
        wire_work = self.sections.get("workloads_wire") or {}
        mock_work = self.sections.get("workloads_mongomock") or {}
        rows: list[list[str]] = []

        def add(
            label: str,
            theirs: Stats | None,
            wire: Stats | None,
            mock: Stats | None,
            paired: Stats | None = None,
        ) -> None:
            ratio = f"{times(paired)} paired" if paired else quotient(wire, theirs)
            rows.append([label, lat(theirs), lat(wire), lat(mock), ratio])

        add(
            "create a thread",
            section.get("create"),
            wire_work.get("create"),
            mock_work.get("create"),
        )
        wire_n = {r["count"]: r["total"] for r in wire_work.get("post_n", [])}
        mock_n = {r["count"]: r["total"] for r in mock_work.get("post_n", [])}
        for item in section.get("post_n", []):
            n = item["count"]
            add(
                f"post {n:,} messages into a new thread (total)",
                item["total"],
                wire_n.get(n),
                mock_n.get(n),
            )
        for length, row in sorted(self.original_posts.items()):
            add(
                f"one post at {length:,} messages",
                row["original"],
                row["ours"],
                self.mock.get(length, {}).get("post"),
                row["ratio"],
            )
        for length, row in sorted(self.original.items()):
            add(
                f"find by id at {length:,} messages (`find(id=)` / `get`)",
                row["find"],
                self.wire.get(length, {}).get("get"),
                self.mock.get(length, {}).get("get"),
            )
        for length, row in sorted(self.original.items()):
            add(
                f"`to_openai()` of {length:,} messages",
                row["to_openai"],
                self.wire.get(length, {}).get("to_openai"),
                self.mock.get(length, {}).get("to_openai"),
            )
        self.add(
            *table(
                [
                    "Workload",
                    "Original (SQLite)",
                    "threadmem-mongo (SecantusDB)",
                    "threadmem-mongo (mongomock)",
                    "SecantusDB ÷ original",
                ],
                rows,
            )
        )
        if self.plan["mode"] == "full" and 5000 in self.plan["lengths"]:
            self.add(
                '"Post N into a new thread" stops at '
                f"{max(self.plan['post_n']):,}: posting 5,000 messages one by one into the "
                "original takes over ten minutes (each post rewrites the thread), which does "
                "not fit the run; the 5,000-message figures above are per post into a "
                "prefilled thread.",
                "",
            )

    def peers_section(self) -> None:
        self.add("## 3. Peer MongoDB stores", "")
        section = self.sections.get("peers") or {}
        why = reason(section)
        if why:
            self.add(f"{why}.", "")
            self.note_missing("Peer stores (langchain-mongodb, openai-agents)", why)
            return
        for key, name in (("langchain", "langchain-mongodb"), ("agents", "openai-agents")):
            peer_why = reason(section.get(key))
            if peer_why:
                self.note_missing(name, peer_why)
        self.add(
            "On the same wire server, appending and reading the same messages. "
            "`MongoDBChatMessageHistory` (langchain-mongodb) stores one document per message: "
            "an append is one `insert`, a read is a `find` by session id. `MongoDBSession` "
            "(openai-agents, `agents.extensions.memory.mongodb_session`) reserves sequence "
            "numbers on a session document, then inserts one document per batch of items; "
            "`get_items(limit=)` reads the newest. Both append in constant time whatever the "
            "thread length; threadmem-mongo keeps the thread in one document, so each append "
            "rewrites a larger document on this server (see the note at the top).",
            "",
            "The peers run in another process, so their appends cannot alternate with ours. "
            "Instead each peer alternates with the same raw pymongo floor as ours (a `$push` "
            "of the library's message into a thread of the same length), which gives it a "
            "paired ratio to the floor; *ours ÷ peer* divides our paired ratio by the peer's. "
            "The machine is shared, so this is the figure to trust over a quotient of raw "
            "latencies. Below 1 = threadmem-mongo faster.",
            "",
        )
        rows = []
        for length in sorted(set(self.wire) | set(self.langchain) | set(self.agents)):
            wire = self.wire.get(length, {})
            lc = self.langchain.get(length, {})
            ag = self.agents.get(length, {})
            rows.append(
                [
                    f"{length:,}",
                    lat(wire.get("post")),
                    lat(lc.get("append")),
                    lat(ag.get("append")),
                    times(wire.get("ratio")),
                    times(lc.get("ratio_floor")),
                    times(ag.get("ratio_floor")),
                    quotient(wire.get("ratio"), lc.get("ratio_floor")),
                    quotient(wire.get("ratio"), ag.get("ratio_floor")),
                ]
            )
        self.add("Appending one message:", "")
        self.add(
            *table(
                [
                    "Messages in thread",
                    "threadmem-mongo `post`",
                    "langchain `add_message`",
                    "agents `add_items`",
                    "ours ÷ floor",
                    "langchain ÷ floor",
                    "agents ÷ floor",
                    "ours ÷ langchain",
                    "ours ÷ agents",
                ],
                rows,
            )
        )
        rows = []
        for length in sorted(set(self.wire) | set(self.langchain) | set(self.agents)):
            ours_last = self.wire.get(length, {}).get("last20")
            rows.append(
                [
                    f"{length:,}",
                    lat(self.wire.get(length, {}).get("get")),
                    lat(self.langchain.get(length, {}).get("read")),
                    lat(self.agents.get(length, {}).get("read")),
                    lat(ours_last) if ours_last else "not available (`get` has no `last=`)",
                    lat(self.langchain.get(length, {}).get("last20")),
                    lat(self.agents.get(length, {}).get("last20")),
                ]
            )
        self.add("Reading:", "")
        self.add(
            *table(
                [
                    "Messages in thread",
                    "ours: whole thread (`get`)",
                    "langchain: `messages`",
                    "agents: `get_items()`",
                    "ours: last 20",
                    "langchain: last 20 (`history_size`)",
                    "agents: `get_items(limit=20)`",
                ],
                rows,
            )
        )
        lengths = sorted(set(self.langchain) | set(self.agents))
        if lengths:
            length = lengths[-1]
            wire = self.wire.get(length, {})
            lc = self.langchain.get(length, {})
            ag = self.agents.get(length, {})
            self.add(f"Round trips / bytes sent / bytes received at {length:,} messages:", "")
            self.add(
                *table(
                    ["Store", "Append one", "Read all", "Read last 20"],
                    [
                        [
                            "threadmem-mongo",
                            _traffic(wire.get("post_traffic")),
                            _traffic(wire.get("get_traffic")),
                            _traffic(wire.get("last20_traffic"))
                            if wire.get("last20_traffic")
                            else "not available",
                        ],
                        [
                            "langchain-mongodb",
                            _traffic(lc.get("append_traffic")),
                            _traffic(lc.get("read_traffic")),
                            _traffic(lc.get("last20_traffic")),
                        ],
                        [
                            "openai-agents",
                            _traffic(ag.get("append_traffic")),
                            _traffic(ag.get("read_traffic")),
                            _traffic(ag.get("last20_traffic")),
                        ],
                    ],
                )
            )

    def floor_section(self) -> None:
        self.add("## 4. The floor: raw pymongo", "")
        self.add(
            'The floor is `collection.update_one({"_id": id}, {"$push": {"messages": m}})` '
            "with the very subdocument the library stores, into a copy of the same thread in "
            "the same collection (same indexes), on the same server. The library's post does "
            "more in that one round trip: its filter skips a message id already present (a "
            "retried post lands once) and checks the size budget, and its update also bumps "
            "`version`, `message_count` and `size_bytes`"
            f"{self._post_command('the post sends ')}. "
            f"Target: within {TARGET_RATIO}x. The target is about a server: mongomock "
            "implements `find_one_and_update` in Python with extra copies of the document, "
            "so its ratios describe mongomock, not the library.",
            "",
        )
        rows = []
        for label, data in (("SecantusDB", self.wire), ("mongomock", self.mock)):
            for length, row in sorted(data.items()):
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
        if rows:
            self.add(
                *table(
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
            )
        else:
            self.add("No data.", "")

    def _post_command(self, lead: str = "") -> str:
        """`` (<lead>`update` with `$push`, ...)``, or nothing if it was not captured."""
        described = (self.results.get("post_command") or {}).get("described")
        return f" ({lead}{described})" if described else ""

    def ops_section(self) -> None:
        self.add("## 5. Round trips and bytes per operation", "")
        section = self.sections.get("ops") or {}
        why = reason(section)
        if why:
            self.add(f"{why}.", "")
            self.note_missing("Round trips and bytes", why)
            return
        self.add(
            f"On the wire server, a thread of {section['length']:,} messages, after the "
            "store's first use (which also sends one `createIndexes` per index). "
            "Deterministic: the same code sends the same commands on any machine.",
            "",
        )
        rows = []
        for row in section["rows"]:
            if row.get("not_available"):
                rows.append([row["operation"], "—", "—", "—", "—", row["note"]])
                self.note_missing("get last 20", row["note"])
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
        self.add(
            *table(
                ["Operation", "Round trips", "Commands", "Bytes sent", "Bytes received", "Note"],
                rows,
            )
        )

    def concurrency_section(self) -> None:
        self.add("## 6. Concurrency", "")
        section = self.sections.get("concurrency") or {}
        why = reason(section)
        if why:
            self.add(f"{why}.", "")
            self.note_missing("Concurrency", why)
            return
        self.add(
            f"1{DASH}{max(self.plan['writers'])} writers, as threads of one process (sharing one "
            f"`MongoClient`) and as processes (`{section['start_method']}`), each posting "
            f"{section['posts_per_writer']} messages either to one shared thread or to a thread "
            f"of its own, on the wire server; {section['reps']} repetition(s) per cell. Each "
            "writer loads its own `RoleThread` object by id, as separate request handlers do. "
            "Afterwards every thread is read back: *lost* counts acknowledged posts that are "
            "not stored, *missing* counts attempted posts not stored, *duplicates* counts "
            "messages stored twice. *Conflicts* are `VersionConflictError`s raised (appends "
            "never conflict). When a writer's object was behind the store (another writer had "
            "appended), its post reads what it missed: *catch-ups* count the reads of only the "
            "messages after the object's last one (only appends had happened), *re-reads* the "
            "reads of the whole thread (anything else had changed). *Round trips per post* "
            "counts every command a writer sent while posting. *vs 1 writer* divides the "
            "throughput by that of one writer in the same setting. Repetitions go round all "
            "the cells in turn. The server answers from one process on a machine of "
            f"{self.meta['cpu_count']} CPUs shared with the writers, so more writers add "
            "no throughput here; what the rows compare is the cost per post.",
            "",
        )
        single = {
            (r["mode"], r["target"]): r["throughput"]["median"]
            for r in section["rows"]
            if r["writers"] == 1
        }

        def speedup(row: dict[str, Any]) -> str:
            base = single.get((row["mode"], row["target"]))
            return f"{row['throughput']['median'] / base:.2f}x" if base else "—"

        rows = []
        for row in section["rows"]:
            rows.append(
                [
                    row["mode"],
                    "one shared thread" if row["target"] == "one" else "a thread each",
                    row["writers"],
                    f"{row['posts']:,} / {row['attempted']:,}",
                    plain(row["throughput"], 0),
                    speedup(row),
                    f"{row['round_trips'] / max(row['posts'], 1):.2f}"
                    if "round_trips" in row
                    else "—",
                    row["conflicts"],
                    row.get("catch_ups", "—"),
                    row["rereads"],
                    row["lost"],
                    row["missing"],
                    row["duplicates"],
                ]
            )
        self.add(
            *table(
                [
                    "Writers as",
                    "Target",
                    "Writers",
                    "Posted / attempted",
                    "Posts per second",
                    "vs 1 writer",
                    "Round trips per post",
                    "Conflicts",
                    "Catch-ups",
                    "Re-reads",
                    "Lost",
                    "Missing",
                    "Duplicates",
                ],
                rows,
            )
        )
        errors = [r for r in section["rows"] if r["errors"]]
        for row in errors:
            self.add(
                f"- {row['mode']}, {row['writers']} writers: {row['errors']} errors, "
                f"last: `{row['last_error']}`"
            )
        if errors:
            self.add("")
        from bench import plots

        self.add(
            self.plot(
                "bench-concurrency.png", lambda path: plots.concurrency_plot(path, section["rows"])
            )
        )

    def memory_section(self) -> None:
        self.add("## 7. Memory", "")
        section = self.sections.get("memory") or {}
        why = reason(section)
        if why:
            self.add(f"{why}.", "")
            self.note_missing("Memory", why)
            return
        self.add(
            f"Peak resident set size of a fresh Python process that connects to the wire "
            f"server and loads one thread of {section['length']:,} messages "
            f"({section['document_bytes']:,} bytes of BSON). *Over baseline* is the peak "
            "during the load minus the RSS just before it (on Linux the kernel's peak is "
            "reset first, so import-time peaks do not hide it). "
            f"{self.plan['memory_reps']} run(s) each.",
            "",
        )
        rows = []
        bars = []
        for row in section["rows"]:
            if row.get("not_available"):
                rows.append([row["label"], "—", "—", f"not available: {row['not_available']}"])
                continue
            rows.append(
                [
                    row["label"],
                    f"{row['messages']:,}",
                    plain(row["peak_mib"]),
                    plain(row["over_baseline_mib"]),
                ]
            )
            if row["mode"] != "baseline":
                bars.append((row["label"].replace("`", ""), row["over_baseline_mib"]))
        self.add(
            *table(
                ["Load", "Messages loaded", "Peak RSS (MiB)", "Over baseline (MiB)"],
                rows,
            )
        )
        if bars:
            from bench import plots

            title = f"Loading a {section['length']:,}-message thread in a fresh process"
            self.add(
                self.plot("bench-memory.png", lambda path: plots.memory_plot(path, bars, title))
            )

    def adapters_section(self) -> None:
        from bench import adapters

        self.add(*adapters.render(self.sections.get("adapters"), self.meta, self.note_missing))

    def overflow_section(self) -> None:
        from bench import overflow

        self.add(
            *overflow.render(
                self.sections.get("overflow"), self.sections, self.plot, self.note_missing
            )
        )

    def not_run(self) -> None:
        self.add("## What could not run, and why", "")
        self.note_missing(
            "Bytes on mongomock",
            "not applicable: mongomock runs in process, there is no wire to monitor",
        )
        if self.plan["mode"] == "smoke":
            self.note_missing(
                "Sizes",
                f"smoke mode: thread lengths {', '.join(map(str, self.plan['lengths']))}"
                f", memory thread of {self.plan['memory_length']} messages, "
                f"{self.plan['reps']} repetitions",
            )
        self.add(*(self.missing or ["Everything ran."]), "")


def write(results: dict[str, Any], out: Path) -> Path:
    """Write ``benchmarks.md`` and its plots into ``out``; return the page's path."""
    page = Page(results, out)
    text = page.build()
    path = out / PAGE
    path.write_text(text, encoding="utf-8")
    return path
