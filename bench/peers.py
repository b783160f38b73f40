"""Section 3: peer MongoDB chat stores on the same wire server, in their own venv.

They are not installed beside threadmem-mongo: they bring some sixty packages, and two
of them (anyio, langsmith) register pytest plugins that would load into this project's
test runs. This interpreter is used only if it already imports them. The section's
part of the page is rendered here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bson import json_util

from bench import ours
from bench.markdown import lat, quotient, reason, rows_by_length, table, times, traffic
from bench.page import Page, measured
from bench.plan import TEXT, Plan, prefill_messages
from bench.targets import DATABASE, Target, stored_message
from bench.venvs import python_with, run_driver
from threadmem_mongo import RoleThread

REQUIREMENTS = ["langchain-mongodb", "openai-agents[mongodb]"]
MODULES = ["langchain_mongodb.chat_message_histories", "agents.extensions.memory.mongodb_session"]
VENV = "venv-peers"
FLOOR_COLLECTION = "peer_floor"


def floor_threads(target: Target, plan: Plan) -> tuple[dict[str, str], str]:
    """A thread of each length for the driver's floor pushes, and the message to push."""
    store = target.store(FLOOR_COLLECTION)
    ids: dict[str, str] = {}
    template: dict[str, Any] = {}
    for length in plan.lengths:
        thread = RoleThread.from_openai(prefill_messages(length), owner_id="floor", store=store)
        thread.post("user", TEXT)
        template = stored_message(target.collection(FLOOR_COLLECTION), thread)
        ids[str(length)] = thread.id
    return ids, json_util.dumps(template)


def peers(uri: str, target: Target, plan: Plan) -> dict[str, Any]:
    """Run the peers' driver.

    Besides each peer's own appends, the driver times the raw pymongo floor (``$push`` of
    the library's message into a thread of the same length) in alternation with them, so
    each peer has a paired ratio to the same floor as threadmem-mongo's post.

    Raises:
        NotRunError: Neither this interpreter nor a venv could provide the packages.
    """
    python, where = python_with(MODULES, VENV, REQUIREMENTS)
    floor_ids, template = floor_threads(target, plan)
    payload = {
        "uri": uri,
        "database": DATABASE,
        "text": TEXT,
        "reps": plan.reps,
        "posts_per_rep": plan.posts_per_rep,
        "lengths": list(plan.lengths),
        "floor_collection": FLOOR_COLLECTION,
        "floor_ids": floor_ids,
        "template": template,
    }
    result = run_driver(python, "bench.drivers.peers", payload)
    result["where"] = where.replace(str(Path.home()), "~")
    return result


# -- the page -------------------------------------------------------------------------------

PEERS = (("langchain", "langchain-mongodb"), ("agents", "openai-agents"))


def peer_rows(page: Page, key: str) -> dict[int, dict[str, Any]]:
    """One peer's rows (``key``: ``langchain`` or ``agents``), by thread length."""
    section = page.sections.get("peers") or {}
    if reason(section):
        return {}
    return rows_by_length(section.get(key))


def versions(page: Page) -> str:
    """The machine table's cell: each peer's package version, or why it did not run."""
    section = page.sections.get("peers") or {}
    if reason(section):
        return reason(section) or ""
    parts = []
    for key, name in PEERS:
        peer = section.get(key) or {}
        parts.append(
            f"{name} {peer.get('version', '?')}" if not reason(peer) else f"{name}: {reason(peer)}"
        )
    return "; ".join(parts) + f" (in {section.get('where', '?')})"


@measured("## 3. Peer MongoDB stores", "peers", "Peer stores (langchain-mongodb, openai-agents)")
def render(page: Page, section: dict[str, Any]) -> list[str]:
    """Section 3: appends and reads of the peers beside ours, each paired with the floor."""
    for key, name in PEERS:
        peer_why = reason(section.get(key))
        if peer_why:
            page.note_missing(name, peer_why)
    lines = [
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
    ]
    wire = ours.post_rows(page, "post_cost_wire")
    langchain, agents = peer_rows(page, "langchain"), peer_rows(page, "agents")
    lengths = sorted(set(wire) | set(langchain) | set(agents))
    return (
        lines
        + _appends(lengths, wire, langchain, agents)
        + _reads(lengths, wire, langchain, agents)
        + _traffic(wire, langchain, agents)
    )


Rows = dict[int, dict[str, Any]]


def _appends(lengths: list[int], wire: Rows, langchain: Rows, agents: Rows) -> list[str]:
    rows = []
    for length in lengths:
        ours_row = wire.get(length, {})
        lc = langchain.get(length, {})
        ag = agents.get(length, {})
        rows.append(
            [
                f"{length:,}",
                lat(ours_row.get("post")),
                lat(lc.get("append")),
                lat(ag.get("append")),
                times(ours_row.get("ratio")),
                times(lc.get("ratio_floor")),
                times(ag.get("ratio_floor")),
                quotient(ours_row.get("ratio"), lc.get("ratio_floor")),
                quotient(ours_row.get("ratio"), ag.get("ratio_floor")),
            ]
        )
    return [
        "Appending one message:",
        "",
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
        ),
    ]


def _reads(lengths: list[int], wire: Rows, langchain: Rows, agents: Rows) -> list[str]:
    rows = []
    for length in lengths:
        ours_last = wire.get(length, {}).get("last20")
        rows.append(
            [
                f"{length:,}",
                lat(wire.get(length, {}).get("get")),
                lat(langchain.get(length, {}).get("read")),
                lat(agents.get(length, {}).get("read")),
                lat(ours_last) if ours_last else "not available (`get` has no `last=`)",
                lat(langchain.get(length, {}).get("last20")),
                lat(agents.get(length, {}).get("last20")),
            ]
        )
    return [
        "Reading:",
        "",
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
        ),
    ]


def _traffic(wire: Rows, langchain: Rows, agents: Rows) -> list[str]:
    """Round trips and bytes of each store at the longest length a peer measured."""
    lengths = sorted(set(langchain) | set(agents))
    if not lengths:
        return []
    length = lengths[-1]
    ours_row = wire.get(length, {})
    lc = langchain.get(length, {})
    ag = agents.get(length, {})
    return [
        f"Round trips / bytes sent / bytes received at {length:,} messages:",
        "",
        *table(
            ["Store", "Append one", "Read all", "Read last 20"],
            [
                [
                    "threadmem-mongo",
                    traffic(ours_row.get("post_traffic")),
                    traffic(ours_row.get("get_traffic")),
                    traffic(ours_row.get("last20_traffic"))
                    if ours_row.get("last20_traffic")
                    else "not available",
                ],
                [
                    "langchain-mongodb",
                    traffic(lc.get("append_traffic")),
                    traffic(lc.get("read_traffic")),
                    traffic(lc.get("last20_traffic")),
                ],
                [
                    "openai-agents",
                    traffic(ag.get("append_traffic")),
                    traffic(ag.get("read_traffic")),
                    traffic(ag.get("last20_traffic")),
                ],
            ],
        ),
    ]
