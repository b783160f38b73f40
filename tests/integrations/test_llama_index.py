"""ThreadMemChatStore against LlamaIndex's own SQL chat store, on every backend.

The differential runner plays one operation sequence on ``SQLAlchemyChatStore``
(``sqlite+aiosqlite:///:memory:``) and on ``ThreadMemChatStore`` and compares every
result. ``delete_message`` is the exception: the SQL store takes its row id, ours the
position, so the runner translates one into the other.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, TextBlock
from llama_index.core.memory import Memory
from llama_index.core.storage.chat_store.base_db import MessageStatus
from llama_index.core.storage.chat_store.sql import SQLAlchemyChatStore
from sqlalchemy import select

from threadmem_mongo import InputTypeError, InvalidInputError, RoleThread, ThreadStore
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore
from threadmem_mongo.integrations.llama_index import MESSAGE_KEY, ThreadMemChatStore

pytestmark = pytest.mark.asyncio

ACTIVE = MessageStatus.ACTIVE
ARCHIVED = MessageStatus.ARCHIVED

# A 1x1 PNG, and one large enough to go to GridFS.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
BIG_PNG = PNG + b"\x00" * 60_000


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def assistant(text: str) -> ChatMessage:
    return ChatMessage(role="assistant", content=text)


@pytest_asyncio.fixture
async def sql_store() -> AsyncIterator[SQLAlchemyChatStore]:
    made = SQLAlchemyChatStore(table_name=f"t_{uuid.uuid4().hex}")
    yield made
    if made._async_engine is not None:
        await made._async_engine.dispose()


def sync_twin(async_store: AsyncThreadStore, db_client: Any) -> ThreadStore:
    """A sync store on the same collection as ``async_store``."""
    collection = async_store.collection
    return ThreadStore(db_client[collection.database.name][collection.name])


async def sql_row_id(sql: SQLAlchemyChatStore, key: str, position: int) -> int:
    """The SQL store's row id of the message at ``position`` in get_messages(status=None)."""
    session_factory, table = await sql._initialize()
    async with session_factory() as session:
        rows = (
            await session.execute(
                select(table.c.id).where(table.c.key == key).order_by(table.c.timestamp, table.c.id)
            )
        ).fetchall()
    return rows[position][0] if 0 <= position < len(rows) else -1


async def run_sequence(store: Any, steps: list[tuple[Any, ...]], *, sql: bool) -> list[Any]:
    """Play ``steps`` (method name, args...) on ``store``; return each step's result."""
    results: list[Any] = []
    for name, *args in steps:
        if name == "delete_message" and sql:
            key, position = args
            args = [key, await sql_row_id(store, key, position)]
        result = await getattr(store, name)(*args)
        if name == "get_keys":
            result = sorted(result)
        results.append(result)
    return results


K = "session-1"
SEQUENCES: dict[str, list[tuple[Any, ...]]] = {
    "empty key": [
        ("get_messages", K),
        ("get_messages", K, None),
        ("count_messages", K),
        ("delete_oldest_messages", K, 3),
        ("archive_oldest_messages", K, 3),
        ("delete_message", K, 0),
        ("delete_messages", K),
        ("get_keys",),
    ],
    "paging": [
        ("add_messages", K, [user(f"m{i}") for i in range(7)]),
        ("get_messages", K, ACTIVE, 3),
        ("get_messages", K, ACTIVE, 3, 3),
        ("get_messages", K, ACTIVE, 3, 6),
        ("get_messages", K, ACTIVE, None, 5),
        ("get_messages", K, ACTIVE, 0),
        ("get_messages", K, ACTIVE, 10, 10),
        ("archive_oldest_messages", K, 2),
        ("get_messages", K, ACTIVE, 2, 1),
        ("get_messages", K, ARCHIVED, 1, 1),
        ("get_messages", K, None, 4, 1),
    ],
    "statuses": [
        ("add_message", K, user("a")),
        ("add_message", K, assistant("b"), ARCHIVED),
        ("add_messages", K, [user("c"), assistant("d")]),
        ("count_messages", K),
        ("count_messages", K, ARCHIVED),
        ("count_messages", K, None),
        ("archive_oldest_messages", K, 2),
        ("get_messages", K, ACTIVE),
        ("get_messages", K, ARCHIVED),
        ("get_messages", K, None),
        ("delete_oldest_messages", K, 5),
        ("get_messages", K, None),
        ("delete_messages", K, ARCHIVED),
        ("get_messages", K, None),
        ("get_keys",),
    ],
    "delete by position and clear": [
        ("add_messages", K, [user("x"), assistant("y"), user("z")]),
        ("add_message", "other", user("o")),
        ("get_keys",),
        ("delete_message", K, 1),
        ("delete_message", K, 7),
        ("get_messages", K, None),
        ("set_messages", K, [assistant("fresh")], ARCHIVED),
        ("get_messages", K, None),
        ("count_messages", K),
        ("delete_messages", K),
        ("get_messages", K, None),
        ("get_keys",),
        ("delete_messages", "other", ACTIVE),
        ("get_keys",),
    ],
    "unicode, large and tool messages": [
        ("add_message", K, user("héllo 🌍 ‮ \u0000 <image> $x.y")),
        ("add_message", K, assistant("y" * 200_000)),
        (
            "add_message",
            K,
            ChatMessage(
                role="assistant",
                content=None,
                additional_kwargs={"tool_calls": [{"id": "c1", "$odd.key": 1}]},
            ),
        ),
        ("add_message", K, ChatMessage(role="tool", content="42", additional_kwargs={"id": "c1"})),
        ("get_messages", K),
        ("archive_oldest_messages", K, 0),
        ("delete_oldest_messages", K, 0),
    ],
    "images": [
        (
            "add_message",
            K,
            ChatMessage(
                role="user",
                blocks=[
                    TextBlock(text="what is <image> this?"),
                    ImageBlock(image=PNG, image_mimetype="image/png"),
                    ImageBlock(image=BIG_PNG, image_mimetype="image/png"),
                    ImageBlock(url="https://example.com/cat.png"),
                ],
            ),
        ),
        ("get_messages", K),
        ("archive_oldest_messages", K, 1),
        ("get_messages", K, ARCHIVED),
    ],
}


@pytest.mark.parametrize("sequence", list(SEQUENCES), ids=list(SEQUENCES))
async def test_sequence_matches_the_sql_store(
    sequence: str, async_store: AsyncThreadStore, sql_store: SQLAlchemyChatStore
) -> None:
    steps = SEQUENCES[sequence]
    expected = await run_sequence(sql_store, steps, sql=True)
    got = await run_sequence(ThreadMemChatStore(store=async_store), steps, sql=False)
    assert got == expected


async def test_each_message_is_one_readable_thread_message(
    async_store: AsyncThreadStore, db_client: Any
) -> None:
    store = sync_twin(async_store, db_client)
    chat = ThreadMemChatStore(store=async_store)
    await chat.add_messages(K, [user("hi"), assistant("hello")])
    await chat.archive_oldest_messages(K, 1)
    await chat.add_message(
        K,
        ChatMessage(
            role="user",
            blocks=[TextBlock(text="see"), ImageBlock(image=BIG_PNG, image_mimetype="image/png")],
        ),
    )
    thread = RoleThread.get(K, store=store)
    assert [(m.role, m.text) for m in thread.messages()] == [
        ("user", "hi"),
        ("assistant", "hello"),
        ("user", "see"),
    ]
    # The status is stored when it is not "active", the default.
    statuses = [m.metadata[MESSAGE_KEY].get("status") for m in thread.messages()]  # type: ignore[index]
    assert statuses == ["archived", None, None]
    stored_image = thread.messages(resolve_images=False)[2].images[0]
    assert stored_image.startswith("gridfs:")
    exported = thread.to_openai()["messages"][2]["content"]
    assert exported[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(
        BIG_PNG
    ).decode("ascii")


async def test_messages_posted_through_the_library_are_read_as_active(
    async_store: AsyncThreadStore,
) -> None:
    chat = ThreadMemChatStore(store=async_store)
    await chat.add_message(K, user("first"))
    thread = await AsyncRoleThread.get(K, store=async_store)
    await thread.post(role="assistant", msg="posted directly")
    await thread.post(role="bot-7", msg="from a bot")
    got = await chat.get_messages(K)
    assert [(m.role.value, m.content) for m in got] == [
        ("user", "first"),
        ("assistant", "posted directly"),
        ("user", "from a bot"),
    ]


async def test_get_keys_lists_only_threads_this_store_wrote(
    async_store: AsyncThreadStore,
) -> None:
    chat = ThreadMemChatStore(store=async_store)
    other = await AsyncRoleThread.create(name="not a chat store thread", store=async_store)
    await other.post(role="user", msg="hello")
    await chat.add_message("mine", user("x"))
    await chat.add_message("emptied", user("y"))
    await chat.delete_oldest_messages("emptied", 1)
    assert await chat.get_keys() == ["mine"]
    # A thread created elsewhere becomes listed once this store writes to it.
    await chat.add_messages(other.id, [user("z")])
    assert sorted(await chat.get_keys()) == sorted(["mine", other.id])


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("get_messages", ("",)),
        ("get_messages", (3,)),
        ("get_messages", (K, "bogus")),
        ("get_messages", (K, ACTIVE, -1)),
        ("get_messages", (K, ACTIVE, None, -2)),
        ("get_messages", (K, ACTIVE, 1.5)),
        ("count_messages", (K, "nope")),
        ("add_message", (K, "not a message")),
        ("add_message", (K, user("x"), None)),
        ("add_messages", (K, (user("x"),))),
        ("add_messages", (K, [user("x"), "y"])),
        ("set_messages", (K, [user("x"), 1])),
        ("delete_message", (K, -1)),
        ("delete_message", (K, True)),
        ("delete_oldest_messages", (K, -1)),
        ("archive_oldest_messages", (K, "2")),
        ("delete_messages", (K, "archived-ish")),
    ],
)
async def test_bad_input_raises_and_writes_nothing(
    method: str, args: tuple[Any, ...], async_store: AsyncThreadStore
) -> None:
    chat = ThreadMemChatStore(store=async_store)
    await chat.add_message(K, user("kept"))
    with pytest.raises(InvalidInputError):
        await getattr(chat, method)(*args)
    assert await chat.get_messages(K, None) == [user("kept")]


async def test_store_argument_is_checked() -> None:
    with pytest.raises(InputTypeError):
        ThreadMemChatStore(store="mongodb://nowhere")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("add_messages", (K, 5)),
        ("add_messages", (K, None)),
        ("set_messages", (K, 5)),
    ],
)
async def test_a_wrong_type_the_sql_store_refuses_with_type_error_raises_input_type_error(
    method: str,
    args: tuple[Any, ...],
    async_store: AsyncThreadStore,
    async_raw: Any,
    sql_store: SQLAlchemyChatStore,
) -> None:
    await sql_store.add_message(K, user("kept"))
    with pytest.raises(TypeError):
        await getattr(sql_store, method)(*args)
    chat = ThreadMemChatStore(store=async_store)
    await chat.add_message(K, user("kept"))
    before = list(async_raw.find({}))
    with pytest.raises(InputTypeError) as raised:
        await getattr(chat, method)(*args)
    assert isinstance(raised.value, TypeError)
    assert isinstance(raised.value, InvalidInputError)
    assert list(async_raw.find({})) == before


async def test_without_store_uses_the_configured_default(async_store: AsyncThreadStore) -> None:
    await ThreadMemChatStore().add_message(K, user("default"))
    assert await ThreadMemChatStore(store=async_store).get_messages(K) == [user("default")]


async def test_concurrent_appends_lose_nothing_and_batches_stay_whole(
    async_store: AsyncThreadStore,
) -> None:
    chat = ThreadMemChatStore(store=async_store)

    async def writer(n: int) -> None:
        await chat.add_message(K, user(f"single {n}"))
        await chat.add_messages(K, [user(f"batch {n} a"), assistant(f"batch {n} b")])

    await asyncio.gather(*(writer(n) for n in range(8)))
    texts = [m.content for m in await chat.get_messages(K)]
    assert len(texts) == 24
    for n in range(8):
        assert texts.index(f"batch {n} b") == texts.index(f"batch {n} a") + 1
        assert f"single {n}" in texts


async def test_concurrent_archivers_and_deleters_never_take_a_message_twice(
    async_store: AsyncThreadStore,
) -> None:
    chat = ThreadMemChatStore(store=async_store)
    await chat.add_messages(K, [user(f"m{i}") for i in range(30)])
    taken = await asyncio.gather(
        *(chat.archive_oldest_messages(K, 3) for _ in range(4)),
        *(chat.delete_oldest_messages(K, 3) for _ in range(4)),
    )
    flat = [m.content for batch in taken for m in batch]
    assert len(flat) == 24
    assert len(set(flat)) == 24
    archived = [m.content for m in await chat.get_messages(K, ARCHIVED)]
    active = [m.content for m in await chat.get_messages(K, ACTIVE)]
    assert sorted(archived) == sorted(m.content for batch in taken[:4] for m in batch)
    assert active == [f"m{i}" for i in range(24, 30)]


# -- the Memory loop ---------------------------------------------------------------------

TURNS = [
    (user(f"question {i}: " + "words " * 12), assistant(f"answer {i}: " + "more " * 12))
    for i in range(6)
]


async def memory_run(chat_store: Any, session_id: str) -> list[Any]:
    memory = Memory.from_defaults(
        session_id=session_id, chat_store=chat_store, token_limit=120, token_flush_size=40
    )
    seen: list[Any] = []
    for question, answer in TURNS:
        await memory.aput(question)
        await memory.aput(answer)
        seen.append([(m.role.value, m.content) for m in await memory.aget()])
    seen.append([m.content for m in await memory.aget_all(status=ARCHIVED)])
    seen.append([m.content for m in await memory.aget_all(status=ACTIVE)])
    return seen


async def test_memory_flushes_to_archived_as_with_the_sql_store(
    async_store: AsyncThreadStore, sql_store: SQLAlchemyChatStore
) -> None:
    ours = await memory_run(ThreadMemChatStore(store=async_store), "memory-session")
    theirs = await memory_run(sql_store, "memory-session")
    assert ours == theirs
    archived, active = ours[-2], ours[-1]
    assert archived, "the token limit should have moved old messages to archived"
    assert len(archived) + len(active) == 2 * len(TURNS)


RELOAD = textwrap.dedent(
    """
    import asyncio, json, sys
    from pymongo import AsyncMongoClient
    from threadmem_mongo.aio import AsyncThreadStore
    from threadmem_mongo.integrations.llama_index import ThreadMemChatStore
    from llama_index.core.memory import Memory
    from llama_index.core.storage.chat_store.base_db import MessageStatus

    async def main():
        client = AsyncMongoClient(sys.argv[1])
        store = AsyncThreadStore(client[sys.argv[2]]["threads"])
        memory = Memory.from_defaults(
            session_id="memory-session", chat_store=ThreadMemChatStore(store=store),
            token_limit=120, token_flush_size=40,
        )
        archived = await memory.aget_all(status=MessageStatus.ARCHIVED)
        active = await memory.aget_all(status=MessageStatus.ACTIVE)
        print(json.dumps([[m.content for m in archived], [m.content for m in active]]))
        await client.close()

    asyncio.run(main())
    """
)


@pytest.mark.wire
@pytest.mark.slow
async def test_memory_reloads_in_a_second_process(
    wire_uri: str, wire_client: Any, store_factory: Any
) -> None:
    from pymongo import AsyncMongoClient

    made = store_factory(wire_client)
    name = made.collection.database.name
    client: AsyncMongoClient[Any] = AsyncMongoClient(wire_uri)
    try:
        seen = await memory_run(
            ThreadMemChatStore(store=AsyncThreadStore(client[name]["threads"])), "memory-session"
        )
    finally:
        await client.close()
    out = subprocess.run(
        [sys.executable, "-c", RELOAD, wire_uri, name],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    import json

    assert json.loads(out.stdout) == [seen[-2], seen[-1]]


async def test_memory_reloads_through_a_second_store_object(
    async_store: AsyncThreadStore,
) -> None:
    seen = await memory_run(ThreadMemChatStore(store=async_store), "memory-session")
    again = Memory.from_defaults(
        session_id="memory-session",
        chat_store=ThreadMemChatStore(store=AsyncThreadStore(async_store.collection)),
        token_limit=120,
        token_flush_size=40,
    )
    assert [m.content for m in await again.aget_all(status=ARCHIVED)] == seen[-2]
    assert [m.content for m in await again.aget_all(status=ACTIVE)] == seen[-1]


# -- processes -----------------------------------------------------------------------------

WORKERS = 4
PROCESS_TIMEOUT = 120.0


def _append_then_archive(uri: str, database: str, worker: int, barrier: Any, results: Any) -> None:
    """Append singles and a batch, wait for every process, then archive four."""
    from pymongo import AsyncMongoClient

    async def main() -> list[str]:
        client: AsyncMongoClient[Any] = AsyncMongoClient(uri)
        try:
            chat = ThreadMemChatStore(store=AsyncThreadStore(client[database]["threads"]))
            barrier.wait(timeout=PROCESS_TIMEOUT)
            for i in range(5):
                await chat.add_message("shared", user(f"{worker}-{i}"))
            await chat.add_messages("shared", [user(f"{worker}-a"), user(f"{worker}-b")])
            barrier.wait(timeout=PROCESS_TIMEOUT)
            return [str(m.content) for m in await chat.archive_oldest_messages("shared", 4)]
        finally:
            await client.close()

    results.put((worker, asyncio.run(main())))


@pytest.mark.wire
@pytest.mark.slow
async def test_processes_append_everything_and_never_archive_a_message_twice(
    wire_uri: str, wire_client: Any, store_factory: Any
) -> None:
    import multiprocessing

    from pymongo import AsyncMongoClient

    database = store_factory(wire_client).collection.database.name
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    results = context.Queue()
    processes = [
        context.Process(target=_append_then_archive, args=(wire_uri, database, n, barrier, results))
        for n in range(WORKERS)
    ]
    for process in processes:
        process.start()
    taken = dict(
        await asyncio.to_thread(
            lambda: [results.get(timeout=PROCESS_TIMEOUT) for _ in range(WORKERS)]
        )
    )
    for process in processes:
        process.join(timeout=PROCESS_TIMEOUT)
    assert [p.exitcode for p in processes] == [0] * WORKERS
    client: AsyncMongoClient[Any] = AsyncMongoClient(wire_uri)
    try:
        chat = ThreadMemChatStore(store=AsyncThreadStore(client[database]["threads"]))
        everything = [str(m.content) for m in await chat.get_messages("shared", None)]
        archived = [str(m.content) for m in await chat.get_messages("shared", ARCHIVED)]
    finally:
        await client.close()
    assert len(everything) == WORKERS * 7
    for worker in range(WORKERS):
        own = [text for text in everything if text.startswith(f"{worker}-")]
        assert own == [f"{worker}-{i}" for i in range(5)] + [f"{worker}-a", f"{worker}-b"]
        assert everything.index(f"{worker}-b") == everything.index(f"{worker}-a") + 1
    flat = [text for batch in taken.values() for text in batch]
    assert len(flat) == len(set(flat)) == WORKERS * 4
    assert sorted(flat) == sorted(archived)
    assert archived == everything[: WORKERS * 4]


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

    code, output = page_example("llama-index.md")
    started: list[Any] = []
    printed = io.StringIO()
    # The page runs asyncio.run(main()); here main() runs on the test's loop and store.
    with mock.patch("asyncio.run", started.append), contextlib.redirect_stdout(printed):
        exec(compile(code, "llama-index.md", "exec"), {"__name__": "__docs__"})
        await started[0]
    assert printed.getvalue().strip() == output.strip()


@pytest.mark.backends("wire", "mongodb", reason="the server filters, counts and cuts the window")
async def test_filtered_windows_of_a_paged_thread_match_the_sql_store(
    async_store: AsyncThreadStore, sql_store: SQLAlchemyChatStore
) -> None:
    # Four messages inline: most of the 30 live in overflow pages, archived ones among
    # them, so each window crosses pages and the inline part.
    paged = AsyncThreadStore(async_store.collection, max_inline_messages=4)
    ours = ThreadMemChatStore(store=paged)
    for store in (sql_store, ours):
        for i in range(30):
            status = MessageStatus.ARCHIVED if i % 7 == 3 else MessageStatus.ACTIVE
            await store.add_message("k", user(f"m{i}"), status=status)
        await store.archive_oldest_messages("k", 5)
    for status in (None, MessageStatus.ACTIVE, MessageStatus.ARCHIVED):
        assert await ours.count_messages("k", status=status) == await sql_store.count_messages(
            "k", status=status
        )
        for offset in (None, 0, 3, 11, 24, 40):
            for limit in (None, 1, 4, 9, 100):
                window = {"status": status, "offset": offset, "limit": limit}
                got = await ours.get_messages("k", **window)
                expected = await sql_store.get_messages("k", **window)
                assert [m.content for m in got] == [m.content for m in expected], window
    assert await ours.get_messages("missing") == []
    assert await ours.count_messages("missing", status=MessageStatus.ACTIVE) == 0
