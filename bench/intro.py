"""The page's opening sections: the title with notes on the run, the headline, the
machine, how to reproduce, and the method. The headline takes one line from each section
that has one (``bench.ours``, ``bench.original``, ``bench.overflow``,
``bench.concurrency``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench import concurrency, original, ours, overflow, peers
from bench.markdown import table

if TYPE_CHECKING:
    from bench.page import Page


def header(page: Page) -> list[str]:
    """The title, the run, and the notes on smoke mode, the server and retryable writes."""
    plan, meta, results = page.plan, page.meta, page.results
    smoke = plan["mode"] == "smoke"
    lines = [
        "# Benchmarks",
        "",
        "threadmem-mongo side by side with the original `threadmem`, peer MongoDB chat "
        "stores, and raw pymongo as the floor. This page is written by `python -m bench`; "
        "do not edit it by hand.",
        "",
        f"Run: **{plan['mode']}** (`{results['command']}`), "
        f"{meta['date']}, commit {meta['git']}, "
        f"{results['elapsed']:.0f} s in all.",
        "",
    ]
    if smoke:
        lines += [
            "> **Smoke run.** Small threads and few repetitions, to check that the harness "
            "works. Do not quote these figures; run `python -m bench` for the real page.",
            "",
        ]
    lines += [
        "> **The server.** The wire figures come from SecantusDB, a MongoDB wire-protocol "
        "server written in Python that the harness starts on a free loopback port. Its "
        "cost per update grows with the size of the document (a `$push` to a thread of "
        "5,000 messages costs it far more than to one of 10), which a real `mongod` does "
        "not do to the same degree. Absolute latencies at long thread lengths are "
        "therefore the server's; the raw pymongo floor pays the same cost on the same "
        "document, so **the ratio to the floor is the figure that carries over**. Thread "
        f"lengths here: {', '.join(f'{n:,}' for n in plan['lengths'])} messages"
        + (" (smoke mode keeps them small for that reason)." if smoke else ".")
        + " Run `python -m bench --uri mongodb://...` to measure a real `mongod`.",
        "",
    ]
    if "SecantusDB" in meta["server_kind"]:
        lines += [
            "> **Retryable writes are off** (`retryWrites=false`) for every client of the "
            "wire server, ours and the peers' alike. SecantusDB "
            f"{meta['secantusdb']} slows down as it accumulates retryable-write "
            "records: after about 10,000 writes in one server's life an insert goes "
            "from under 1 ms to about 7 ms, even once the database is dropped, which "
            "would charge each section for the writes of the ones before it. With "
            "retryable writes on, each write command also carries a `txnNumber` (a few "
            "more bytes than the figures below). A URI given with `--uri` is used as "
            "it is.",
            "",
        ]
    return lines


def headline(page: Page) -> list[str]:
    """One line from each section that has a headline figure."""
    lines = [
        "## Headline",
        "",
        ours.headline(page),
        original.headline(page),
        overflow.headline(page),
    ]
    writers = concurrency.headline(page)
    if writers:
        lines.append(writers)
    return [*lines, ""]


def machine(page: Page) -> list[str]:
    """The machine, the packages and the server the figures come from."""
    meta = page.meta
    server = f"{meta['server_kind']}; reports version {meta['server']}"
    if "SecantusDB" in meta["server_kind"]:
        server += f"; SecantusDB package {meta['secantusdb']}"
    return [
        "## Machine",
        "",
        *table(
            ["Item", "Value"],
            [
                ["When", meta["date"]],
                [
                    "Load average (1 min) at start / end",
                    f"{meta.get('load_start', '?')} / {page.results.get('load_end', '?')}",
                ],
                ["Platform", meta["platform"]],
                ["CPU", f"{meta['cpu']}, {meta['cpu_count']} logical CPUs"],
                ["Python", f"{meta['implementation']} {meta['python']}"],
                ["pymongo", meta["pymongo"]],
                ["mongomock", meta["mongomock"]],
                ["Server", server],
                ["threadmem-mongo", f"{meta['threadmem_mongo']}, commit {meta['git']}"],
                ["Original threadmem", original.versions(page)],
                ["Peers", peers.versions(page)],
            ],
        ),
    ]


def reproduce(page: Page) -> list[str]:
    """The commands that write this page, and what the harness installs on its own."""
    return [
        "## How to reproduce",
        "",
        "```sh",
        "pip install -e '.[bench]'           # matplotlib, mongomock, secantusdb",
        "python -m bench --out docs/         # the full run; writes this page and the plots",
        "python -m bench --smoke --out /tmp/bench   # seconds; what CI runs",
        "python -m bench --uri 'mongodb://127.0.0.1:27017/?directConnection=true'  # a real mongod",
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
    ]


def method(page: Page) -> list[str]:
    """How latencies, ratios and bytes are taken."""
    p = page.plan
    return [
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
    ]
