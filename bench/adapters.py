"""Section 8: the agent-framework adapters against the MongoDB stores they replace.

Each framework's interface is measured twice on the same wire server: behind
threadmem-mongo's adapter, and behind the framework's own MongoDB backend (for Pydantic
AI, which has none, behind its ``InMemoryConversationStore`` as a floor). Each store runs
in its own driver process (``bench.drivers.adapter_peers``): ours in this interpreter, a
peer in this interpreter if it imports there, else in a venv built by ``bench.venvs``.
Batches of ours and the peer's operations alternate, and each repetition gives one
paired ratio.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import peers as peer_stores
from bench import venvs
from bench.markdown import lat, reason, table, times
from bench.measure import summary
from bench.page import Page, measured
from bench.plan import TEXT, Plan
from bench.targets import DATABASE
from bench.venvs import LineDriver, NotRunError
from threadmem_mongo._pages import DEFAULT_MAX_INLINE_MESSAGES

DRIVER = "bench.drivers.adapter_peers"
#: Sessions at or above this length get :attr:`Sizes.long_reps` repetitions.
LONG = 5000


@dataclass(frozen=True)
class Sizes:
    """Session lengths and repetitions of this section."""

    lengths: tuple[int, ...]
    #: Repetitions (one paired ratio each) and operations per batch, below LONG items.
    reps: int
    per_rep: int
    #: The same at LONG items and above, where one append can take seconds on SecantusDB.
    long_reps: int
    long_per_rep: int

    def for_length(self, length: int) -> tuple[int, int]:
        if length >= LONG:
            return self.long_reps, self.long_per_rep
        return self.reps, self.per_rep

    def as_dict(self) -> dict[str, Any]:
        return {
            "lengths": list(self.lengths),
            "reps": self.reps,
            "per_rep": self.per_rep,
            "long": LONG,
            "long_reps": self.long_reps,
            "long_per_rep": self.long_per_rep,
        }


FULL_SIZES = Sizes(lengths=(10, 1000, 10000), reps=5, per_rep=4, long_reps=3, long_per_rep=2)
SMOKE_SIZES = Sizes(lengths=(10, 100), reps=3, per_rep=2, long_reps=3, long_per_rep=2)


@dataclass(frozen=True)
class Framework:
    """One framework interface: our adapter and the peer measured against it."""

    key: str
    title: str
    ours: str
    peer: str
    #: Whether the peer is a MongoDB store (False: a reference floor in memory).
    mongodb_peer: bool
    append: str
    read: str
    #: Modules the peer's driver imports, and the venv that provides them otherwise.
    modules: tuple[str, ...]
    venv: str | None = None
    requirements: tuple[str, ...] = ()
    note: str = ""


FRAMEWORKS = (
    Framework(
        key="agents",
        title="OpenAI Agents SDK",
        ours="`ThreadMemSession`",
        peer="`MongoDBSession` (`agents.extensions.memory`)",
        mongodb_peer=True,
        append="`add_items([item])`",
        read="`get_items(limit=20)`",
        modules=("agents.extensions.memory.mongodb_session",),
        venv=peer_stores.VENV,
        requirements=tuple(peer_stores.REQUIREMENTS),
    ),
    Framework(
        key="langchain",
        title="LangChain",
        ours="`ThreadMemChatMessageHistory` (sync)",
        peer="langchain-mongodb `MongoDBChatMessageHistory`",
        mongodb_peer=True,
        append="`add_messages([message])`",
        read="`messages` (the whole history: neither limits it by default)",
        modules=tuple(peer_stores.MODULES),
        venv=peer_stores.VENV,
        requirements=tuple(peer_stores.REQUIREMENTS),
    ),
    Framework(
        key="llama",
        title="LlamaIndex",
        ours="`ThreadMemChatStore` (`AsyncDBChatStore`)",
        peer="llama-index-storage-chat-store-mongo `MongoChatStore`",
        mongodb_peer=True,
        append="ours `add_message(key, message)`; peer `async_add_message(key, message)`",
        read="ours `get_messages(key)`; peer `aget_messages(key)` (the whole history: "
        "the peer's interface has no limit)",
        modules=("llama_index.storage.chat_store.mongo",),
        venv="venv-llama-index-mongo",
        # MongoChatStore's constructor reads the version of the llama-index distribution.
        requirements=("llama-index-storage-chat-store-mongo", "llama-index"),
        note="`MongoChatStore` creates no index; the benchmark gives it "
        "`{session_id: 1, index: 1}`, which its queries filter and sort on. Its "
        "constructor reads the installed version of the `llama-index` distribution, so "
        "its venv installs `llama-index` too.",
    ),
    Framework(
        key="adk",
        title="Google ADK",
        ours="`ThreadMemSessionService`",
        peer="`MongoDbSessionService` (`google.adk.integrations.mongodb`, experimental)",
        mongodb_peer=True,
        append="`append_event(session, event)`",
        read="`get_session(..., config=GetSessionConfig(num_recent_events=20))`",
        modules=("google.adk.integrations.mongodb._session_service",),
        venv="venv-adk-mongodb",
        requirements=("google-adk[mongodb]",),
        note="ADK has no batch append: both sessions are prefilled by writing the stored "
        "form of `append_event` in bulk (ours: the session's thread created again with "
        "the adapter's messages, the oldest in overflow pages as appends leave them; the "
        "peer: its event documents, and the session's revision). The timed appends go "
        "through `append_event`.",
    ),
    Framework(
        key="pydantic",
        title="Pydantic AI",
        ours="`ThreadMemConversationStore`",
        peer="`InMemoryConversationStore` (no MongoDB store exists: a floor, not a peer)",
        mongodb_peer=False,
        append="`save(conversation)` after appending one message",
        read="`load(conversation_id, limit=20)`",
        modules=("pydantic_ai.conversation_store",),
    ),
)


def _peer_python(framework: Framework, run_venvs: bool) -> tuple[Path, str]:
    """The interpreter for the peer's driver, and where it is.

    Raises:
        NotRunError: The peer needs a venv and venvs are skipped, or it cannot be built.
    """
    modules = list(framework.modules)
    if venvs._imports(sys.executable, modules):
        return Path(sys.executable), "this interpreter"
    if framework.venv is None:
        raise NotRunError(f"{', '.join(modules)} not importable here")
    if not run_venvs:
        raise NotRunError(
            "skipped in --smoke mode (its venv is not built; pass --with-peers to build it)"
        )
    python = venvs.ensure_venv(framework.venv, list(framework.requirements), modules)
    return python, str(python.parent.parent).replace(str(Path.home()), "~")


@dataclass
class Paired:
    """Per-repetition means of ours and the peer (and, for appends, of the floor)."""

    ours: list[float]
    peer: list[float]
    ratios: list[float]
    floor: list[float]
    floor_ratios: list[float]
    items_ours: int = -1
    items_peer: int = -1

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "ours": summary(self.ours),
            "peer": summary(self.peer),
            "ratio": summary(self.ratios),
        }
        if self.floor:
            result["floor"] = summary(self.floor)
            result["ratio_floor"] = summary(self.floor_ratios)
        if self.items_ours >= 0:
            result["items_ours"] = self.items_ours
            result["items_peer"] = self.items_peer
        return result


def _paired(ours: LineDriver, peer: LineDriver, op: str, reps: int, per_rep: int) -> Paired:
    """Alternate batches of ``op`` on ours and the peer (order swapped every repetition).

    Our appends alternate, inside their batch, with the raw pymongo floor.
    """
    paired = Paired([], [], [], [], [])
    ours_op = "append_floor" if op == "append" else op
    for rep in range(reps):
        order = (("ours", ours, ours_op), ("peer", peer, op))
        answers: dict[str, dict[str, Any]] = {}
        for name, driver, command in order if rep % 2 == 0 else order[::-1]:
            answers[name] = driver.call({"op": command, "count": per_rep})
        mine, theirs = answers["ours"], answers["peer"]
        paired.ours.append(mine["mean"])
        paired.peer.append(theirs["mean"])
        paired.ratios.append(mine["mean"] / theirs["mean"])
        if "floor" in mine:
            paired.floor.append(mine["floor"])
            paired.floor_ratios.append(mine["mean"] / mine["floor"])
        if "items" in mine:
            paired.items_ours, paired.items_peer = int(mine["items"]), int(theirs["items"])
    return paired


def _config(uri: str, case: str, framework: Framework) -> dict[str, Any]:
    return {
        "uri": uri,
        "database": DATABASE,
        "collection": f"adapters_{case.split('-')[0]}_{framework.key}",
        "text": TEXT,
        "case": case,
    }


def _measure(framework: Framework, uri: str, sizes: Sizes, run_venvs: bool) -> dict[str, Any]:
    python, where = _peer_python(framework, run_venvs)
    result: dict[str, Any] = {"where": where}
    with (
        LineDriver(
            Path(sys.executable), DRIVER, _config(uri, f"ours-{framework.key}", framework)
        ) as ours,
        LineDriver(python, DRIVER, _config(uri, f"peer-{framework.key}", framework)) as peer,
    ):
        rows = []
        for length in sizes.lengths:
            reps, per_rep = sizes.for_length(length)
            prefill_ours = ours.call({"op": "prefill", "length": length})["seconds"]
            prefill_peer = peer.call({"op": "prefill", "length": length})["seconds"]
            for driver in (ours, peer):  # warm: a first append and read of each
                driver.call({"op": "append", "count": 1})
                driver.call({"op": "read", "count": 1})
            appends = _paired(ours, peer, "append", reps, per_rep)
            reads = _paired(ours, peer, "read", reps, per_rep)
            traffic = {
                name: {
                    # The deletion last: it removes the session, and the next length
                    # builds a new one.
                    what: driver.call({"op": "traffic", "what": what})
                    for what in ("append", "read", "recent", "clear")
                }
                for name, driver in (("ours", ours), ("peer", peer))
            }
            rows.append(
                {
                    "length": length,
                    "reps": reps,
                    "per_rep": per_rep,
                    "prefill": {"ours": prefill_ours, "peer": prefill_peer},
                    "append": appends.as_dict(),
                    "read": reads.as_dict(),
                    "traffic": traffic,
                }
            )
        result["rows"] = rows
        result["versions"] = {
            "ours": ours.call({"op": "about"}),
            "peer": peer.call({"op": "about"}),
        }
    return result


def adapters(uri: str, plan: Plan, run_venvs: bool) -> dict[str, Any]:
    """Measure every framework; one that cannot run says why and the others go on."""
    sizes = SMOKE_SIZES if plan.mode == "smoke" else FULL_SIZES
    frameworks: dict[str, Any] = {}
    for framework in FRAMEWORKS:
        try:
            frameworks[framework.key] = _measure(framework, uri, sizes, run_venvs)
        except NotRunError as exc:
            frameworks[framework.key] = {"not_run": str(exc)}
        print(f"[bench] adapters: {framework.key} done", file=sys.stderr, flush=True)
    return {"sizes": sizes.as_dict(), "frameworks": frameworks}


# -- the page -------------------------------------------------------------------------------


@measured("## 8. Agent-framework adapters", "adapters", "Agent-framework adapters")
def render(page: Page, section: dict[str, Any]) -> list[str]:
    """Section 8: a summary of ours ÷ peer, then a table per framework."""
    meta = page.meta
    sizes = section["sizes"]
    server = f"{meta['server_kind']}, reporting version {meta['server']}"
    if "SecantusDB" in meta["server_kind"]:
        server += f" (SecantusDB package {meta['secantusdb']})"
    lines = [
        "Each framework's own interface, with threadmem-mongo's adapter behind it and "
        "with the MongoDB backend it replaces, on the same server: "
        f"**{server}**. Each store runs in a driver process of its own "
        "(`bench/drivers/adapter_peers.py`; a peer that does not import here runs in its "
        "venv) that times its operations itself. For each session length, both stores "
        "build a session of that many items, take one untimed append and read, then "
        "batches of the same operation alternate between them (order swapped each "
        "repetition), and each repetition gives one paired ratio *ours ÷ peer*: below 1 "
        "= threadmem-mongo faster. Medians, with min and max in brackets, of "
        f"{sizes['reps']} repetitions of {sizes['per_rep']} operations; from "
        f"{sizes['long']:,} items on, {sizes['long_reps']} repetitions of "
        f"{sizes['long_per_rep']} (one append can take seconds there). An append is one "
        "framework item (a ~200-byte text message or event); a read is the framework's "
        "read named below. Inside each batch, our appends also alternate with the raw "
        "pymongo floor: `update_one` `$push` of the message the adapter stored last, with "
        "a fresh id, into a copy of the session's thread document (the same inline "
        "messages, in a collection with the same indexes); *ours ÷ floor* is what the "
        "adapter adds to the one write the server has to do anyway.",
        "",
        "> **What the server does to these figures.** threadmem-mongo keeps a session in "
        "one thread document holding its newest messages (up to "
        f"{DEFAULT_MAX_INLINE_MESSAGES} by default; older "
        "ones move to overflow page documents), and an append updates that document; "
        "the MongoDB peers insert one document per item (per `add_items` call for "
        "`MongoDBSession`). SecantusDB's cost per update grows with the size of the "
        "document (section 1) and an insert's does not, so on this server part of our "
        "append is the server's cost of updating a document of up to "
        f"{DEFAULT_MAX_INLINE_MESSAGES} messages: the "
        "floor column shows that part. On `mongod` run `python -m bench --uri ...`.",
        "",
    ]
    frameworks: dict[str, Any] = section["frameworks"]
    measured = [f for f in FRAMEWORKS if not reason(frameworks.get(f.key))]
    if measured:
        header = ["Framework", "Peer"]
        for length in sizes["lengths"]:
            header += [f"append, {length:,}", f"read, {length:,}"]
        rows = []
        for framework in measured:
            by_length = {row["length"]: row for row in frameworks[framework.key]["rows"]}
            cells: list[object] = [framework.title, framework.peer]
            for length in sizes["lengths"]:
                row = by_length.get(length)
                cells += [
                    times(row["append"]["ratio"]) if row else "—",
                    times(row["read"]["ratio"]) if row else "—",
                ]
            rows.append(cells)
        lines += ["Ours ÷ peer, paired, by items in the session:", "", *table(header, rows)]
    for framework in FRAMEWORKS:
        result = frameworks.get(framework.key)
        lines += [f"**{framework.title}**: ours {framework.ours}; peer {framework.peer}.", ""]
        missing = page.not_measured(result, f"Adapters: {framework.title} peer")
        if missing or result is None:
            lines += missing
            continue
        versions = result.get("versions", {})
        peer_version = versions.get("peer", {}).get("version", "?")
        lines += [
            f"Append: {framework.append}. Read: {framework.read}. Peer package version "
            f"{peer_version}, run in {result['where']}."
            + ("" if framework.mongodb_peer else " In process memory: a floor, not a peer.")
            + (f" {framework.note}" if framework.note else ""),
            "",
        ]
        rows = []
        for row in result["rows"]:
            read = row["read"]
            rows.append(
                [
                    f"{row['length']:,}",
                    lat(row["append"]["ours"]),
                    lat(row["append"]["peer"]),
                    times(row["append"]["ratio"]),
                    lat(row["append"].get("floor")),
                    times(row["append"].get("ratio_floor")),
                    lat(read["ours"]),
                    lat(read["peer"]),
                    times(read["ratio"]),
                    f"{read.get('items_ours', -1):,} / {read.get('items_peer', -1):,}",
                    f"{row['reps']} of {row['per_rep']}",
                ]
            )
        lines += table(
            [
                "Items in session",
                "Append: ours",
                "Append: peer",
                "Append: ours ÷ peer",
                "Raw `$push` floor",
                "Append: ours ÷ floor",
                "Read: ours",
                "Read: peer",
                "Read: ours ÷ peer",
                "Items read (ours / peer)",
                "Repetitions of ops",
            ],
            rows,
        )
        lines += _traffic_table(result["rows"])
    return lines


def _traffic_cell(counted: dict[str, Any] | None) -> str:
    if not counted:
        return "—"
    commands = counted["commands"]
    return f"{len(commands)} ({', '.join(commands)}), {counted['reply_bytes'] / 1024:,.1f} KB"


def _traffic_table(rows: list[dict[str, Any]]) -> list[str]:
    """Commands sent and reply bytes of one more append and one more read, each store."""
    counted = [row for row in rows if "traffic" in row]
    if not counted:
        return []
    operations = (("append", "Append"), ("recent", "Newest 20"), ("clear", "Clear"))
    cells = [
        [f"{row['length']:,}"]
        + [
            _traffic_cell(row["traffic"][store].get(key))
            for key, _ in operations
            for store in ("ours", "peer")
        ]
        for row in counted
    ]
    header = ["Items in session"] + [
        f"{title}: {store}" for _, title in operations for store in ("ours", "peer")
    ]
    return [
        "",
        "Traffic of one more append, a read of the newest 20 items (where the interface "
        "can limit it: LangChain `history_size=20`, LlamaIndex `count_messages` then "
        "`get_messages(offset=, limit=20)`; `MongoChatStore` has no limit and reads the "
        "whole history) and the deletion of the session, each counted with pymongo "
        "command monitoring: the commands sent, and the bytes of their replies.",
        "",
        *table(header, cells),
    ]
