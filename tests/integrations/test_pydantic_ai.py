"""ThreadMemConversationStore against Pydantic AI's InMemoryConversationStore, on every backend.

The differential runner plays one script of store operations on both stores. Entry ids
and revisions are random, so each is replaced in the observations by a label given in
order of first appearance ("e0", "e1", ...); the two stores then have to agree on every
observation: messages, entries and their parents, records, branches, forks, errors.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.conversation import Conversation
from pydantic_ai.conversation_store import (
    ConversationConflict,
    ConversationEntry,
    ConversationRecord,
    ConversationStore,
    InMemoryConversationStore,
)
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import (
    BinaryContent,
    ImageUrl,
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.test import TestModel

from threadmem_mongo import (
    InputTypeError,
    InvalidInputError,
    RoleThread,
    ThreadNotFoundError,
    ThreadStore,
)
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore
from threadmem_mongo.integrations.pydantic_ai import ENTRY_KEY, ThreadMemConversationStore

pytestmark = pytest.mark.asyncio

T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def ask(text: str) -> ModelRequest:
    return ModelRequest(parts=[UserPromptPart(content=text, timestamp=T0)])


def reply(text: str) -> ModelResponse:
    return ModelResponse(parts=[TextPart(content=text)], timestamp=T0)


def turn(n: int) -> list[ModelMessage]:
    return [ask(f"q{n}"), reply(f"a{n}")]


TOOL_TURN: list[ModelMessage] = [
    ModelRequest(
        parts=[
            SystemPromptPart(content="be brief", timestamp=T0),
            UserPromptPart("use the tool", timestamp=T0),
        ]
    ),
    ModelResponse(
        parts=[ToolCallPart("lookup", {"q": "x", "$k.y": 1}, tool_call_id="c1")], timestamp=T0
    ),
    ModelRequest(parts=[ToolReturnPart("lookup", {"r": [1, 2]}, tool_call_id="c1", timestamp=T0)]),
    reply("done ✓ héllo"),
]


class Runner:
    """Plays a script on one store; observations use labels instead of random ids."""

    def __init__(self, store: ConversationStore) -> None:
        self.store = store
        self.labels: dict[str, str] = {}
        self.conversations: dict[str, Conversation] = {}

    def label(self, value: str | None) -> str | None:
        if value is None:
            return None
        return self.labels.setdefault(value, f"e{len(self.labels)}")

    def unlabel(self, label: str) -> str:
        return next(raw for raw, name in self.labels.items() if name == label)

    def record(self, record: ConversationRecord | None) -> Any:
        if record is None:
            return None
        assert record.updated_at.tzinfo is not None
        return (
            record.conversation_id,
            self.label(record.head_id),
            record.usage.requests,
            record.scope,
            record.forked_from,
            self.label(record.forked_at),
            [self.label(tip) for tip in record.branches],
            record.title,
            record.metadata,
        )

    def conversation(self, conversation: Conversation | None) -> Any:
        if conversation is None:
            return None
        return (conversation.conversation_id, conversation.messages, conversation.usage.requests)

    def entries(self, entries: list[ConversationEntry] | None) -> Any:
        if entries is None:
            return None
        return [(self.label(e.id), self.label(e.parent_id), e.message) for e in entries]

    async def step(self, op: str, *args: Any) -> Any:
        s = self.store
        if op == "new":
            name, conversation_id, messages = args
            self.conversations[name] = Conversation(
                conversation_id=conversation_id, messages=list(messages)
            )
            return None
        if op == "add":
            name, messages = args
            self.conversations[name].messages.extend(messages)
            self.conversations[name].usage.requests += 1
            return None
        if op == "save":
            name, scope = args
            return self.entries(await s.save(self.conversations[name], scope=scope))
        if op == "load":
            name, conversation_id, limit, scope = args
            loaded = await s.load(conversation_id, limit=limit, scope=scope)
            if loaded is not None:
                self.conversations[name] = loaded
            return self.conversation(loaded)
        if op == "entries":
            conversation_id, limit = args
            return self.entries(await s.load_entries(conversation_id, limit=limit))
        if op == "branch":
            name, conversation_id, at, from_label = args
            expected = self.conversations[name].revision
            branched = await s.branch(
                conversation_id,
                at=at,
                from_entry=None if from_label is None else self.unlabel(from_label),
                expected_revision=expected,
            )
            self.conversations[name] = branched
            return self.conversation(branched)
        if op == "fork":
            name, conversation_id, at, new_id, scope = args
            forked = await s.fork(conversation_id, at=at, new_conversation_id=new_id, scope=scope)
            self.conversations[name] = forked
            return self.conversation(forked)
        if op == "delete":
            conversation_id, scope = args
            return await s.delete(conversation_id, scope=scope)
        if op == "list":
            scope, limit = args
            return [self.record(r) for r in await s.list_conversations(scope=scope, limit=limit)]
        if op == "record":
            return self.record(await s.read_record(args[0]))
        if op == "entry":
            return self.entries([await s.read_entry(self.unlabel(args[0]))])
        if op == "update":
            conversation_id, changes = args
            return self.record(await s.update(conversation_id, **changes))
        if op == "details":
            # write_details straight, at the revision the named conversation holds.
            name, conversation_id, details, expected = args
            revision = self.conversations[name].revision
            assert revision is not None
            written = await s.write_details(
                conversation_id, details, expected_revision=revision, expected=expected
            )
            return self.record(written)
        raise AssertionError(op)

    async def run(self, script: list[tuple[Any, ...]]) -> list[Any]:
        seen: list[Any] = []
        for op, *args in script:
            try:
                seen.append((op, await self.step(op, *args)))
            except Exception as exc:  # the error is an observation too
                seen.append((op, type(exc).__name__))
        return seen


SCRIPTS: dict[str, list[tuple[Any, ...]]] = {
    "empty store": [
        ("load", "x", "nobody", None, None),
        ("entries", "nobody", None),
        ("record", "nobody"),
        ("list", None, None),
        ("delete", "nobody", None),
        ("fork", "f", "nobody", None, "f1", None),
        ("new", "c", "empty", []),
        ("save", "c", None),
        ("load", "c", "empty", None, None),
        ("record", "empty"),
    ],
    "turns, windows and stale saves": [
        ("new", "c", "conv", turn(0)),
        ("save", "c", "alice"),
        ("add", "c", turn(1)),
        ("save", "c", None),
        ("load", "w", "conv", 3, None),
        ("entries", "conv", 2),
        ("load", "stale", "conv", None, None),
        ("add", "c", turn(2)),
        ("save", "c", None),
        ("add", "stale", turn(9)),
        ("save", "stale", None),
        ("load", "c", "conv", None, "bob"),
        ("load", "c", "conv", None, "alice"),
        ("new", "dup", "conv", turn(0)),
        ("save", "dup", None),
        ("add", "w", turn(3)),
        ("save", "w", None),
        ("load", "c", "conv", None, None),
        ("list", "alice", None),
        ("list", "bob", None),
        ("load", "bad", "conv", -1, None),
    ],
    "branches": [
        ("new", "c", "conv", [*turn(0), *turn(1), *turn(2)]),
        ("save", "c", None),
        ("branch", "c", "conv", 2, None),
        ("add", "c", turn(7)),
        ("save", "c", None),
        ("record", "conv"),
        ("entries", "conv", None),
        ("branch", "c", "conv", None, "e5"),
        ("load", "c", "conv", None, None),
        ("branch", "c", "conv", 9, None),
        ("branch", "c", "conv", None, "nope"),
        ("new", "rewritten", "conv", [*turn(0), *turn(4)]),
        ("save", "rewritten", None),
        ("load", "c", "conv", None, None),
        ("save", "c", None),
        ("new", "serialized", "conv", [*turn(0), *turn(1), *turn(2), *turn(5)]),
        ("load", "s", "conv", None, None),
        ("record", "conv"),
    ],
    "forks and deletes": [
        ("new", "a", "A", [*turn(0), *turn(1)]),
        ("save", "a", "team"),
        ("fork", "b", "A", 2, "B", None),
        ("fork", "c", "A", None, "C", "other"),
        ("fork", "x", "A", 1, "B", None),
        ("add", "b", turn(2)),
        ("save", "b", None),
        ("fork", "d", "B", 3, "D", None),
        ("delete", "A", None),
        ("record", "A"),
        ("load", "b", "B", None, None),
        ("load", "d", "D", None, None),
        ("entries", "D", None),
        ("list", None, None),
        ("delete", "B", "wrong scope"),
        ("delete", "B", None),
        ("load", "d", "D", None, None),
        ("delete", "D", None),
        ("load", "c", "C", None, "other"),
        ("delete", "C", None),
        ("list", None, None),
        ("new", "a2", "A", turn(3)),
        ("save", "a2", None),
        ("load", "a2", "A", None, None),
    ],
    "titles and metadata": [
        ("update", "conv", {"title": "nobody"}),
        ("new", "c", "conv", turn(0)),
        ("save", "c", "alice"),
        ("load", "stale", "conv", None, None),
        ("update", "conv", {}),
        ("update", "conv", {"title": "Weather", "expected_title": None}),
        ("update", "conv", {"title": "Again", "expected_title": None}),
        ("update", "conv", {"title": "Renamed", "expected_title": "Weather"}),
        ("update", "conv", {"metadata": {"model": "m1", "n": [1, 2.5, None, {"é": True}]}}),
        ("update", "conv", {"title": "wrong scope"} | {"scope": "bob"}),
        ("update", "conv", {"title": "right scope"} | {"scope": "alice"}),
        ("record", "conv"),
        # Saves never change the title or metadata, not even from a copy read before.
        ("add", "c", turn(1)),
        ("save", "c", None),
        ("record", "conv"),
        ("load", "c2", "conv", None, None),
        ("update", "conv", {"title": "Latest"}),
        ("add", "c2", turn(2)),
        ("save", "c2", None),
        ("record", "conv"),
        ("add", "stale", turn(3)),
        ("save", "stale", None),
        ("branch", "c2", "conv", 2, None),
        ("record", "conv"),
        ("fork", "f", "conv", None, "forked", None),
        ("record", "forked"),
        ("update", "conv", {"title": None, "metadata": None}),
        ("list", None, None),
        ("details", "c2", "conv", {"title": "direct"}, None),
        ("details", "stale", "conv", {"title": "stale revision"}, None),
        ("details", "c2", "conv", {"metadata": {"k": 1}}, {"title": "not this"}),
        ("details", "c2", "conv", {"metadata": {"k": 1}}, {"title": "direct"}),
        ("details", "c2", "nobody", {"title": "x"}, None),
        ("delete", "conv", None),
        ("update", "conv", {"title": "gone"}),
        ("new", "again", "conv", turn(4)),
        ("save", "again", None),
        ("record", "conv"),
    ],
    "tool calls, unicode and large messages": [
        ("new", "c", "tools ✓", [*TOOL_TURN, ask("x" * 300_000), reply("")]),
        ("save", "c", None),
        ("load", "c", "tools ✓", None, None),
        ("entry", "e2"),
        ("entries", "tools ✓", 3),
    ],
}


@pytest.mark.parametrize("script", list(SCRIPTS), ids=list(SCRIPTS))
async def test_script_matches_the_in_memory_store(
    script: str, async_store: AsyncThreadStore
) -> None:
    expected = await Runner(InMemoryConversationStore()).run(SCRIPTS[script])
    got = await Runner(ThreadMemConversationStore(store=async_store)).run(SCRIPTS[script])
    assert got == expected


def sync_twin(async_store: AsyncThreadStore, db_client: Any) -> ThreadStore:
    collection = async_store.collection
    return ThreadStore(db_client[collection.database.name][collection.name])


async def test_each_entry_is_one_readable_message(
    async_store: AsyncThreadStore, db_client: Any
) -> None:
    store = ThreadMemConversationStore(store=async_store)
    entries = await store.save(Conversation(conversation_id="conv", messages=list(TOOL_TURN)))
    thread = RoleThread.get("conv", store=sync_twin(async_store, db_client))
    assert [m.id for m in thread.messages()] == [e.id for e in entries]
    assert [(m.role, m.text) for m in thread.messages()] == [
        ("user", "be brief\nuse the tool"),
        ("assistant", 'lookup({"q":"x","$k.y":1})'),
        ("tool", 'lookup -> {"r":[1,2]}'),
        ("assistant", "done ✓ héllo"),
    ]
    parents = [m.metadata[ENTRY_KEY]["parent_id"] for m in thread.messages()]  # type: ignore[index]
    assert parents == [None, *(e.id for e in entries[:-1])]
    assert thread.to_openai()["messages"][0] == {
        "role": "user",
        "content": "be brief\nuse the tool",
    }


async def test_images_go_through_the_image_path_and_come_back(
    async_store: AsyncThreadStore, db_client: Any
) -> None:
    big = PNG + b"\x00" * 60_000
    message = ModelRequest(
        parts=[
            UserPromptPart(
                [
                    "what is <image> this?",
                    BinaryContent(big, media_type="image/png"),
                    ImageUrl("https://example.com/cat.png"),
                ],
                timestamp=T0,
            )
        ]
    )
    store = ThreadMemConversationStore(store=async_store)
    await store.save(Conversation(conversation_id="pics", messages=[message]))
    stored = RoleThread.get("pics", store=sync_twin(async_store, db_client))
    raw = stored.messages(resolve_images=False)[0]
    assert raw.images[0].startswith("gridfs:")
    assert raw.images[1] == "https://example.com/cat.png"
    assert base64.b64encode(big).decode() not in json.dumps(raw.metadata)
    loaded = await ThreadMemConversationStore(store=async_store).load("pics")
    assert loaded is not None
    content = loaded.messages[0].parts[0].content  # type: ignore[union-attr]
    assert content[0] == "what is <image> this?"
    assert content[1].data == big
    assert content[1].media_type == "image/png"
    assert content[2].url == "https://example.com/cat.png"


async def test_record_updated_at_is_timezone_aware(async_store: AsyncThreadStore) -> None:
    store = ThreadMemConversationStore(store=async_store)
    await store.save(Conversation(conversation_id="c", messages=turn(0)))
    record = await store.read_record("c")
    assert record is not None
    assert record.updated_at.utcoffset() == datetime.timedelta(0)
    [listed] = await store.read_records()
    assert listed.updated_at.tzinfo is not None
    assert listed.updated_at == record.updated_at


async def test_same_revision_writers_one_wins_the_others_write_nothing(
    async_store: AsyncThreadStore,
) -> None:
    store = ThreadMemConversationStore(store=async_store)
    await store.save(Conversation(conversation_id="race", messages=turn(0)))
    loaded = [await store.load("race") for _ in range(6)]
    for n, conversation in enumerate(loaded):
        assert conversation is not None
        conversation.messages.extend(turn(10 + n))
    outcomes = await asyncio.gather(
        *(store.save(c) for c in loaded if c is not None), return_exceptions=True
    )
    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    losers = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(o, ConversationConflict) for o in losers)
    thread = await AsyncRoleThread.get("race", store=async_store)
    assert thread.message_count == 4
    final = await store.load("race")
    assert final is not None
    assert final.messages[2:] == [entry.message for entry in winners[0]]


async def test_concurrent_creators_one_wins(async_store: AsyncThreadStore) -> None:
    store = ThreadMemConversationStore(store=async_store)
    outcomes = await asyncio.gather(
        *(store.save(Conversation(conversation_id="new", messages=turn(n))) for n in range(5)),
        return_exceptions=True,
    )
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert all(
        isinstance(o, ConversationConflict) for o in outcomes if isinstance(o, BaseException)
    )
    assert (await AsyncRoleThread.get("new", store=async_store)).message_count == 2


async def test_write_record_conflicts_and_missing_heads(async_store: AsyncThreadStore) -> None:
    store = ThreadMemConversationStore(store=async_store)
    first = ConversationRecord(conversation_id="r", head_id=None)
    await store.write_record(first, expected_revision=None)
    with pytest.raises(ConversationConflict):
        await store.write_record(
            ConversationRecord(conversation_id="r", head_id=None), expected_revision=None
        )
    with pytest.raises(ConversationConflict):
        await store.write_record(
            ConversationRecord(conversation_id="r", head_id="no-such-entry"),
            expected_revision=first.revision,
        )
    with pytest.raises(ConversationConflict):
        await store.delete_record("r", expected_revision="stale")
    assert (await store.read_record("r")) == first
    await store.delete_record("r", expected_revision=first.revision)
    assert await store.read_record("r") is None
    with pytest.raises(KeyError):
        await store.read_entry("no-such-entry")


def both_stores(async_store: AsyncThreadStore) -> list[ConversationStore]:
    """The reference store and ours, to run the same steps on."""
    return [InMemoryConversationStore(), ThreadMemConversationStore(store=async_store)]


async def test_a_save_that_read_the_record_before_an_update_keeps_the_update(
    async_store: AsyncThreadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An update lands between a save's read of the record and its write: the save
    keeps the update's title and metadata, on the reference store and on ours."""

    async def save_with_an_update_in_between(store: ConversationStore) -> Any:
        await store.save(Conversation(conversation_id="c", messages=turn(0)))
        loaded = await store.load("c")
        assert loaded is not None
        loaded.messages.extend(turn(1))
        real_write = store.write_record

        async def update_first(record: ConversationRecord, **kwargs: Any) -> None:
            assert record.title is None  # what the save read
            await store.update("c", title="set meanwhile", metadata={"by": "update"})
            await real_write(record, **kwargs)

        with monkeypatch.context() as patched:
            patched.setattr(store, "write_record", update_first)
            await store.save(loaded)
        record = await store.read_record("c")
        assert record is not None
        return record.title, record.metadata, record.revision == loaded.revision

    seen = [await save_with_an_update_in_between(s) for s in both_stores(async_store)]
    assert seen == [("set meanwhile", {"by": "update"}, True)] * 2


async def test_concurrent_updates_and_a_save_all_land(async_store: AsyncThreadStore) -> None:
    store = ThreadMemConversationStore(store=async_store)
    await store.save(Conversation(conversation_id="c", messages=turn(0)))
    loaded = await store.load("c")
    assert loaded is not None
    loaded.messages.extend(turn(1))
    results = await asyncio.gather(
        store.save(loaded),
        *(store.update("c", title=f"title {n}") for n in range(4)),
        *(store.update("c", metadata={"n": n}) for n in range(4)),
    )
    record = await store.read_record("c")
    assert record is not None
    assert record.title in {f"title {n}" for n in range(4)}
    assert record.metadata in [{"n": n} for n in range(4)]
    assert record.revision == loaded.revision
    assert results[0][-1].id == record.head_id
    final = await store.load("c")
    assert final is not None
    assert final.messages == [*turn(0), *turn(1)]


async def test_update_returns_the_stored_record_and_keeps_revision_and_time(
    async_store: AsyncThreadStore,
) -> None:
    store = ThreadMemConversationStore(store=async_store)
    await store.save(Conversation(conversation_id="c", messages=turn(0)))
    before = await store.read_record("c")
    assert before is not None
    returned = await store.update("c", title="T", metadata={"a": [1, {"b": None}]})
    after = await store.read_record("c")
    assert returned == after
    assert after is not None
    assert (after.title, after.metadata) == ("T", {"a": [1, {"b": None}]})
    assert (after.revision, after.updated_at) == (before.revision, before.updated_at)
    # The record is the thread's: another store object reads the same.
    other = ThreadMemConversationStore(store=AsyncThreadStore(async_store.collection))
    assert await other.read_record("c") == after


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s, r: s.update("c", title=5), InputTypeError),
        (lambda s, r: s.update("c", metadata=["not", "a", "dict"]), InputTypeError),
        (lambda s, r: s.update("c", metadata={"when": T0}), InvalidInputError),
        (lambda s, r: s.update("c", metadata={"set": {1}}), InvalidInputError),
        (lambda s, r: s.update("c", metadata={"pair": (1, 2)}), InvalidInputError),
        (lambda s, r: s.update("c", metadata={"nan": float("nan")}), InvalidInputError),
        (lambda s, r: s.update("c", metadata={1: "int key"}), InvalidInputError),
        (lambda s, r: s.write_details("c", 5, expected_revision=r), InputTypeError),
        (lambda s, r: s.write_details("c", {"title": "t"}, expected_revision=5), InputTypeError),
        (lambda s, r: s.write_details(5, {"title": "t"}, expected_revision=r), InputTypeError),
        (
            lambda s, r: s.write_details("c", {"scope": "x"}, expected_revision=r),
            NotImplementedError,
        ),
        (
            lambda s, r: s.write_details(
                "c", {"title": "t"}, expected_revision=r, expected={"x": 1}
            ),
            NotImplementedError,
        ),
    ],
)
async def test_bad_details_raise_and_write_nothing(
    async_store: AsyncThreadStore,
    async_raw: Any,
    call: Callable[[ThreadMemConversationStore, str], Any],
    error: type[Exception],
) -> None:
    store = ThreadMemConversationStore(store=async_store)
    await store.save(Conversation(conversation_id="c", messages=turn(0)))
    await store.update("c", title="kept", metadata={"kept": True})
    record = await store.read_record("c")
    assert record is not None
    before = async_raw.find_one({"_id": "c"})
    with pytest.raises(error):
        await call(store, record.revision)
    assert async_raw.find_one({"_id": "c"}) == before


async def test_deleting_the_last_fork_deletes_the_kept_thread(
    async_store: AsyncThreadStore,
) -> None:
    store = ThreadMemConversationStore(store=async_store)
    await store.save(Conversation(conversation_id="A", messages=[*turn(0), *turn(1)]))
    await store.fork("A", at=2, new_conversation_id="B")
    await store.delete("A")
    kept = await AsyncRoleThread.get("A", store=async_store)
    assert kept.message_count == 4
    forked = await store.load("B")
    assert forked is not None
    assert forked.messages == turn(0)
    await store.delete("B")
    for gone in ("A", "B"):
        with pytest.raises(ThreadNotFoundError):
            await AsyncRoleThread.get(gone, store=async_store)


async def test_forks_racing_a_delete_either_keep_their_history_or_conflict(
    async_store: AsyncThreadStore,
) -> None:
    store = ThreadMemConversationStore(store=async_store)
    for attempt in range(6):
        source = f"A{attempt}"
        await store.save(Conversation(conversation_id=source, messages=[*turn(0), *turn(1)]))
        calls = [store.fork(source, at=3, new_conversation_id=f"{source}-f{n}") for n in range(3)]
        # The delete starts first, last, or in between, so each side wins some races.
        calls.insert(attempt % 4, store.delete(source))
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert outcomes.pop(attempt % 4) is None
        forks = [o for o in outcomes if not isinstance(o, BaseException)]
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        # A fork that read the source before the delete may still lose the race.
        assert all(isinstance(o, (ConversationConflict, UserError)) for o in failed)
        assert await store.read_record(source) is None
        for fork in forks:
            loaded = await store.load(fork.conversation_id)
            assert loaded is not None
            assert loaded.messages == [*turn(0), ask("q1")]
        for fork in forks:
            await store.delete(fork.conversation_id)
        # Once the last fork is gone, nothing of the source is left.
        assert await AsyncRoleThread.find(store=async_store) == []


async def test_a_fork_registered_while_a_delete_decides_keeps_the_source_thread(
    async_store: AsyncThreadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delete read the source with no fork using it; a fork registers before the
    delete lands: the delete's conditional write misses, and it keeps the thread."""
    store = ThreadMemConversationStore(store=async_store)
    await store.save(Conversation(conversation_id="A", messages=[*turn(0), *turn(1)]))
    delete_decided = asyncio.Event()
    fork_registered = asyncio.Event()
    real_delete = async_store.delete
    real_register = store._register

    async def delete_after_the_fork(thread_id: str, *, version: int | None = None) -> bool:
        if thread_id == "A" and not delete_decided.is_set():
            delete_decided.set()
            await fork_registered.wait()
        return await real_delete(thread_id, version=version)

    async def register_once_the_delete_decided(user: str, holder: str) -> list[str]:
        await delete_decided.wait()
        try:
            return await real_register(user, holder)
        finally:
            fork_registered.set()

    monkeypatch.setattr(async_store, "delete", delete_after_the_fork)
    monkeypatch.setattr(store, "_register", register_once_the_delete_decided)
    deleted, forked = await asyncio.gather(
        store.delete("A"), store.fork("A", at=3, new_conversation_id="B")
    )
    assert deleted is None
    assert forked.messages == [*turn(0), ask("q1")]
    assert await store.read_record("A") is None
    assert (await AsyncRoleThread.get("A", store=async_store)).message_count == 4
    loaded = await store.load("B")
    assert loaded is not None
    assert loaded.messages == [*turn(0), ask("q1")]
    await store.delete("B")
    assert await AsyncRoleThread.find(store=async_store) == []


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.read_record(""),
        lambda s: s.read_record(5),
        lambda s: s.read_records(scope=3),
        lambda s: s.read_records(limit=-1),
        lambda s: s.read_entry(None),
        lambda s: s.write_record("record", expected_revision=None),
        lambda s: s.write_record(
            ConversationRecord(conversation_id="c", head_id=None), expected_revision=7
        ),
        lambda s: s.write_record(
            ConversationRecord(conversation_id="c", head_id=None),
            new_entries=["x"],
            expected_revision=None,
        ),
        lambda s: s.write_record(
            ConversationRecord(
                conversation_id="c", head_id=None, updated_at=datetime.datetime(2026, 1, 1)
            ),
            expected_revision=None,
        ),
        lambda s: s.delete_record("c", expected_revision=None),
    ],
)
async def test_bad_input_raises_and_writes_nothing(
    call: Callable[[ThreadMemConversationStore], Any], async_store: AsyncThreadStore
) -> None:
    store = ThreadMemConversationStore(store=async_store)
    with pytest.raises(InvalidInputError):
        await call(store)
    assert await AsyncRoleThread.find(store=async_store) == []


async def test_store_argument_is_checked() -> None:
    with pytest.raises(InputTypeError):
        ThreadMemConversationStore(store=object())  # type: ignore[arg-type]


#: Calls with an argument of the wrong type that ``InMemoryConversationStore`` refuses
#: with a TypeError; each gets the id of the stored conversation's newest entry.
WRONG_TYPES: dict[str, Callable[[ConversationStore, str], Any]] = {
    "read_records limit text": lambda s, head: s.read_records(limit="2"),
    "read_records limit float": lambda s, head: s.read_records(limit=1.5),
    "read_entry list": lambda s, head: s.read_entry([head]),
    "read_history limit text": lambda s, head: s.read_history(head, limit="2"),
    "write_record new_entries not iterable": lambda s, head: s.write_record(
        ConversationRecord(conversation_id="other", head_id=None),
        new_entries=5,
        expected_revision=None,
    ),
}


@pytest.mark.parametrize("name", sorted(WRONG_TYPES))
async def test_a_wrong_type_the_reference_refuses_with_type_error_raises_input_type_error(
    async_store: AsyncThreadStore, async_raw: Any, name: str
) -> None:
    call = WRONG_TYPES[name]
    reference, ours = both_stores(async_store)
    for store in (reference, ours):
        await store.save(Conversation(conversation_id="c", messages=turn(0)))
    reference_head = (await reference.read_record("c")).head_id  # type: ignore[union-attr]
    with pytest.raises(TypeError):
        await call(reference, reference_head)
    our_head = (await ours.read_record("c")).head_id  # type: ignore[union-attr]
    before = list(async_raw.find({}))
    with pytest.raises(InputTypeError) as raised:
        await call(ours, our_head)
    assert isinstance(raised.value, TypeError)
    assert isinstance(raised.value, InvalidInputError)
    assert list(async_raw.find({})) == before


async def test_without_store_uses_the_configured_default(async_store: AsyncThreadStore) -> None:
    await ThreadMemConversationStore().save(Conversation(conversation_id="d", messages=turn(0)))
    loaded = await ThreadMemConversationStore(store=async_store).load("d")
    assert loaded is not None
    assert loaded.messages == turn(0)


# -- the agent loop ----------------------------------------------------------------------


def tool_agent() -> Agent[None, str]:
    agent = Agent(TestModel(custom_output_text="all done"))

    @agent.tool_plain
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    return agent


async def agent_turns(store: ConversationStore, conversation_id: str) -> Conversation:
    agent = tool_agent()
    for prompt in ("what is the weather?", "and tomorrow?"):
        conversation = await store.load(conversation_id) or Conversation(
            conversation_id=conversation_id
        )
        result = await agent.run(prompt, conversation=conversation)
        await store.save(result)
    loaded = await store.load(conversation_id)
    assert loaded is not None
    return loaded


async def test_agent_loop_persists_through_the_store(async_store: AsyncThreadStore) -> None:
    ours = await agent_turns(ThreadMemConversationStore(store=async_store), "agent")
    theirs = await agent_turns(InMemoryConversationStore(), "agent")
    kinds = [[p.part_kind for p in m.parts] for m in ours.messages]
    assert kinds == [[p.part_kind for p in m.parts] for m in theirs.messages]
    assert ["tool-call"] in kinds
    assert ["tool-return"] in kinds
    assert ours.usage.requests == theirs.usage.requests
    assert ours.usage.requests >= 2
    again = await ThreadMemConversationStore(store=AsyncThreadStore(async_store.collection)).load(
        "agent"
    )
    assert again is not None
    assert again.messages == ours.messages


RELOAD = textwrap.dedent(
    """
    import asyncio, sys
    from pymongo import AsyncMongoClient
    from pydantic_ai.messages import ModelMessagesTypeAdapter
    from threadmem_mongo.aio import AsyncThreadStore
    from threadmem_mongo.integrations.pydantic_ai import ThreadMemConversationStore

    async def main():
        client = AsyncMongoClient(sys.argv[1])
        store = ThreadMemConversationStore(store=AsyncThreadStore(client[sys.argv[2]]["threads"]))
        loaded = await store.load("agent")
        sys.stdout.write(ModelMessagesTypeAdapter.dump_json(loaded.messages).decode())
        await client.close()

    asyncio.run(main())
    """
)


@pytest.mark.wire
@pytest.mark.slow
async def test_agent_conversation_reloads_in_a_second_process(
    wire_uri: str, wire_client: Any, store_factory: Any
) -> None:
    from pymongo import AsyncMongoClient

    name = store_factory(wire_client).collection.database.name
    client: AsyncMongoClient[Any] = AsyncMongoClient(wire_uri)
    try:
        store = ThreadMemConversationStore(store=AsyncThreadStore(client[name]["threads"]))
        ours = await agent_turns(store, "agent")
    finally:
        await client.close()
    out = subprocess.run(
        [sys.executable, "-c", RELOAD, wire_uri, name],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert ModelMessagesTypeAdapter.validate_json(out.stdout) == ours.messages


# -- processes -----------------------------------------------------------------------------

WORKERS = 4
PROCESS_TIMEOUT = 120.0


def _save_after_barrier(uri: str, database: str, worker: int, barrier: Any, results: Any) -> None:
    """Load the shared conversation, wait for every process, then save a new turn."""
    from pymongo import AsyncMongoClient

    async def main() -> str:
        client: AsyncMongoClient[Any] = AsyncMongoClient(uri)
        try:
            store = ThreadMemConversationStore(store=AsyncThreadStore(client[database]["threads"]))
            conversation = await store.load("shared")
            assert conversation is not None
            conversation.messages.extend(turn(100 + worker))
            barrier.wait(timeout=PROCESS_TIMEOUT)
            try:
                await store.save(conversation)
            except ConversationConflict:
                return "conflict"
            return "saved"
        finally:
            await client.close()

    results.put((worker, asyncio.run(main())))


@pytest.mark.wire
@pytest.mark.slow
async def test_processes_saving_one_revision_one_wins_the_others_write_nothing(
    wire_uri: str, wire_client: Any, store_factory: Any
) -> None:
    import multiprocessing

    from pymongo import AsyncMongoClient

    database = store_factory(wire_client).collection.database.name
    client: AsyncMongoClient[Any] = AsyncMongoClient(wire_uri)
    try:
        store = ThreadMemConversationStore(store=AsyncThreadStore(client[database]["threads"]))
        await store.save(Conversation(conversation_id="shared", messages=turn(0)))
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(WORKERS)
        results = context.Queue()
        processes = [
            context.Process(
                target=_save_after_barrier, args=(wire_uri, database, n, barrier, results)
            )
            for n in range(WORKERS)
        ]
        for process in processes:
            process.start()
        outcomes = dict(
            await asyncio.to_thread(
                lambda: [results.get(timeout=PROCESS_TIMEOUT) for _ in range(WORKERS)]
            )
        )
        for process in processes:
            process.join(timeout=PROCESS_TIMEOUT)
        assert [p.exitcode for p in processes] == [0] * WORKERS
        winners = [n for n, outcome in outcomes.items() if outcome == "saved"]
        assert len(winners) == 1
        assert sorted(outcomes.values()).count("conflict") == WORKERS - 1
        final = await store.load("shared")
        assert final is not None
        assert final.messages == [*turn(0), *turn(100 + winners[0])]
        thread = await AsyncRoleThread.get("shared", store=store._store)
        assert thread.message_count == 4
    finally:
        await client.close()


# -- the documentation example ---------------------------------------------------------------


def page_example(page: str) -> tuple[str, str]:
    """The example block of a docs page (the one after ``<!-- example -->``) and its output."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "integrations" / page).read_text()
    match = re.search(
        r"<!-- example -->\n```python\n(?P<code>.*?)\n```\n\nOutput:\n\n"
        r"```text\n(?P<output>.*?)\n```",
        text,
        re.S,
    )
    assert match is not None, f"no example with an output in {page}"
    return match["code"], match["output"]


async def test_the_docs_example_prints_what_the_page_shows(async_store: AsyncThreadStore) -> None:
    import contextlib
    import io
    from unittest import mock

    code, output = page_example("pydantic-ai.md")
    started: list[Any] = []
    printed = io.StringIO()
    # The page runs asyncio.run(main()); here main() runs on the test's loop and store.
    with mock.patch("asyncio.run", started.append), contextlib.redirect_stdout(printed):
        exec(compile(code, "pydantic-ai.md", "exec"), {"__name__": "__docs__"})
        await started[0]
    assert printed.getvalue().strip() == output.strip()
