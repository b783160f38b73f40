"""``ThreadMemChatMessageHistory``: LangChain's chat history on a thread, on every backend.

Operation sequences run on our history and on LangChain's ``InMemoryChatMessageHistory``
and must give the same results step by step, through the sync methods (``store``
fixture) and the native async ones (``async_store`` fixture), mixed; every message type
round-trips equal; the stored thread is an ordinary, readable thread; concurrent writers
lose nothing; and a fake chat model driven through a tool-calling loop and through
``RunnableWithMessageHistory`` persists a conversation that a second process (or a
second history object, on mongomock) reads back whole.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from typing import Any

import pytest
from langchain_core._api.deprecation import LangChainDeprecationWarning
from langchain_core.chat_history import BaseChatMessageHistory, InMemoryChatMessageHistory
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
    message_to_dict,
)
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory
from langchain_core.tools import tool
from pymongo.collection import Collection

from threadmem_mongo import (
    ConfigurationError,
    ImageNotFoundError,
    InputTypeError,
    InvalidInputError,
    RoleThread,
    ThreadStore,
)
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore
from threadmem_mongo.integrations.langchain import (
    METADATA_KEY,
    THREAD_METADATA,
    ThreadMemChatMessageHistory,
)

Raw = Collection[dict[str, Any]]

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4).decode()
SMALL_IMAGE = f"data:image/png;base64,{PNG}"
LARGE_PNG = PNG * 60  # over the 32 KiB GridFS threshold as a data URI
LARGE_IMAGE = f"data:image/png;base64,{LARGE_PNG}"
URL_IMAGE = "https://example.com/cat.png"


def reference_history() -> InMemoryChatMessageHistory:
    # LangChain deprecated its history classes (since 1.6.4) in favour of LangGraph
    # persistence; the in-memory one is still the reference this adapter is compared with.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", category=LangChainDeprecationWarning, message=".*InMemoryChatMessageHistory"
        )
        return InMemoryChatMessageHistory()


def every_kind_of_message() -> list[BaseMessage]:
    """One message of each type LangChain stores, with every field set."""
    return [
        SystemMessage("You are terse.", id="sys-1", additional_kwargs={"cache": True}),
        HumanMessage("What is on this picture? <image>", id="h-1", name="alice"),
        HumanMessage(
            content=[
                {"type": "text", "text": "And these?"},
                {"type": "image_url", "image_url": {"url": SMALL_IMAGE, "detail": "low"}},
                {"type": "image_url", "image_url": URL_IMAGE},
                {"type": "image", "base64": LARGE_PNG, "mime_type": "image/png"},
                {"type": "image", "url": URL_IMAGE},
                {"type": "image", "source_type": "base64", "data": PNG, "mime_type": "image/png"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
            ]
        ),
        AIMessage(
            content="",
            id="ai-1",
            name="bot",
            tool_calls=[{"name": "lookup", "args": {"q": "cats", "n": 2}, "id": "call-1"}],
            invalid_tool_calls=[
                {"name": "broken", "args": "{oops", "id": "call-2", "error": "bad JSON"}
            ],
            usage_metadata={"input_tokens": 10, "output_tokens": 4, "total_tokens": 14},
            response_metadata={"model_name": "fake", "finish_reason": "tool_calls"},
            additional_kwargs={"refusal": None, "$odd.key": [1, {"a.b": 2}]},
        ),
        ToolMessage("two cats", tool_call_id="call-1", artifact={"rows": [1, 2]}, status="success"),
        ToolMessage("failed", tool_call_id="call-2", status="error", name="broken"),
        FunctionMessage(name="legacy_fn", content='{"ok": true}'),
        ChatMessage(role="critic", content="Could be shorter."),
        AIMessage(
            content=[
                {"type": "reasoning", "reasoning": "think"},
                {"type": "text", "text": "Two cats. 🐈🐈 — ünïcödé"},
            ],
            id="ai-2",
        ),
        AIMessageChunk(content="partial", id="chunk-1"),
    ]


# -- the differential runner -------------------------------------------------------------

Op = tuple[Any, ...]


async def run_ops(history: BaseChatMessageHistory, ops: list[Op]) -> list[Any]:
    """Run ``ops`` on ``history`` (sync and async methods) and return what each gave."""
    results: list[Any] = []
    for op in ops:
        name = op[0]
        if name == "add":
            results.append(history.add_messages(op[1]))
        elif name == "aadd":
            results.append(await history.aadd_messages(op[1]))
        elif name == "add_one":
            results.append(history.add_message(op[1]))
        elif name == "get":
            results.append(list(history.messages))
        elif name == "aget":
            results.append(await history.aget_messages())
        elif name == "clear":
            results.append(history.clear())
        elif name == "aclear":
            results.append(await history.aclear())
        else:  # pragma: no cover - a typo in a sequence
            raise AssertionError(f"unknown op {name}")
    return results


SYNC_SEQUENCES: dict[str, list[Op]] = {
    "empty": [("get",), ("clear",), ("get",)],
    "appends": [
        ("add", [HumanMessage("hi"), AIMessage("hello")]),
        ("add_one", HumanMessage("again")),
        ("add", [ChatMessage(role="", content="a blank role"), ChatMessage(role=" ", content="")]),
        ("add", []),
        ("get",),
    ],
    "every_type": [("add", every_kind_of_message()), ("get",)],
    "one_at_a_time": [("add_one", m) for m in every_kind_of_message()] + [("get",)],
    "clear_and_reuse": [
        ("add", [HumanMessage("before")]),
        ("clear",),
        ("get",),
        ("clear",),
        ("add", [HumanMessage("after")]),
        ("get",),
    ],
    "large": [("add", [HumanMessage("x" * 400_000), AIMessage("y" * 300_000)]), ("get",)],
}

ASYNC_SEQUENCES: dict[str, list[Op]] = {
    "async_empty": [("aget",), ("aclear",), ("aget",)],
    "async_every_type": [("aadd", every_kind_of_message()), ("aget",)],
    "mixed": [
        ("add", [HumanMessage("sync in")]),
        ("aadd", [AIMessage("async in")]),
        ("aget",),
        ("get",),
        ("aclear",),
        ("get",),
        ("aadd", every_kind_of_message()),
        ("get",),
        ("clear",),
        ("aget",),
    ],
}


@pytest.mark.asyncio
@pytest.mark.parametrize("sequence", sorted(SYNC_SEQUENCES))
async def test_sync_sequences_match_in_memory_history(store: ThreadStore, sequence: str) -> None:
    ops = SYNC_SEQUENCES[sequence]
    expected = await run_ops(reference_history(), ops)
    ours = ThreadMemChatMessageHistory(f"sync-{sequence}", store=store)
    assert await run_ops(ours, ops) == expected


@pytest.mark.asyncio
@pytest.mark.parametrize("sequence", sorted({**SYNC_SEQUENCES, **ASYNC_SEQUENCES}))
async def test_sequences_on_default_stores_match_in_memory_history(
    async_store: AsyncThreadStore, sequence: str
) -> None:
    ops = {**SYNC_SEQUENCES, **ASYNC_SEQUENCES}[sequence]
    expected = await run_ops(reference_history(), ops)
    ours = ThreadMemChatMessageHistory(f"default-{sequence}")
    assert await run_ops(ours, ops) == expected


@pytest.mark.asyncio
@pytest.mark.parametrize("sequence", sorted(ASYNC_SEQUENCES))
async def test_sequences_on_explicit_stores_match_in_memory_history(
    async_store: AsyncThreadStore, db_client: Any, sequence: str
) -> None:
    ops = ASYNC_SEQUENCES[sequence]
    expected = await run_ops(reference_history(), ops)
    sync_store = ThreadStore(db_client[async_store.collection.database.name]["threads"])
    ours = ThreadMemChatMessageHistory(
        f"explicit-{sequence}", store=sync_store, async_store=async_store
    )
    assert await run_ops(ours, ops) == expected


@pytest.mark.asyncio
async def test_every_message_type_round_trips_equal_with_all_fields(
    async_store: AsyncThreadStore,
) -> None:
    sent = every_kind_of_message()
    history = ThreadMemChatMessageHistory("all-types")
    await history.aadd_messages(sent)
    for got in (await history.aget_messages(), history.messages):
        assert got == sent
        assert [type(m) for m in got] == [type(m) for m in sent]
        assert [message_to_dict(m) for m in got] == [message_to_dict(m) for m in sent]


# -- what is stored -----------------------------------------------------------------------


def test_messages_are_readable_messages_of_the_thread_named_by_session_id(
    store: ThreadStore,
) -> None:
    history = ThreadMemChatMessageHistory("chat-1", store=store, owner_id="alice")
    history.add_messages(every_kind_of_message())
    thread = RoleThread.get("chat-1", store=store)
    assert thread.owner_id == "alice"
    assert thread.metadata == THREAD_METADATA
    readable = [(m.role, m.text) for m in thread.messages()]
    assert readable == [
        ("system", "You are terse."),
        ("user", "What is on this picture? <image>"),
        ("user", "And these?"),
        ("assistant", 'lookup({"q": "cats", "n": 2})'),
        ("tool", "two cats"),
        ("tool", "failed"),
        ("function", '{"ok": true}'),
        ("critic", "Could be shorter."),
        ("assistant", "Two cats. 🐈🐈 — ünïcödé"),
        ("assistant", "partial"),
    ]
    first = thread.to_openai()["messages"][0]
    assert first == {"role": "system", "content": "You are terse."}
    stored = thread.messages()[3].metadata
    assert stored is not None
    assert json.loads(stored[METADATA_KEY]["item"])["type"] == "ai"


def test_images_go_through_the_image_path_and_large_ones_to_gridfs(
    store: ThreadStore, raw: Raw
) -> None:
    history = ThreadMemChatMessageHistory("pics", store=store)
    sent = every_kind_of_message()[2]
    history.add_messages([sent])
    doc = raw.find_one({"_id": "pics"})
    assert doc is not None
    images = doc["messages"][0]["images"]
    assert len(images) == 6
    assert images[0] == SMALL_IMAGE
    assert images[1] == URL_IMAGE
    assert images[2].startswith("gridfs:")
    assert LARGE_PNG not in doc["messages"][0]["metadata"][METADATA_KEY]["item"]
    assert history.messages == [sent]
    history.clear()
    with pytest.raises(ImageNotFoundError):  # clearing released the blob
        store.blobs.read(images[2].split(":", 1)[1])


def test_messages_posted_without_the_adapter_read_as_plain_messages(store: ThreadStore) -> None:
    thread = RoleThread(store=store)
    thread.post(role="user", msg="plain")
    thread.post(role="assistant", msg="look", images=[URL_IMAGE])
    thread.post(role="system", msg="rules")
    thread.post(role="bot-7", msg="another bot")
    history = ThreadMemChatMessageHistory(thread.id, store=store)
    assert history.messages == [
        HumanMessage("plain"),
        AIMessage(
            content=[
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": URL_IMAGE}},
            ]
        ),
        SystemMessage("rules"),
        ChatMessage(role="bot-7", content="another bot"),
    ]


# -- stores -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_store_given_for_one_api_is_never_paired_with_a_default_for_the_other(
    async_store: AsyncThreadStore, db_client: Any
) -> None:
    sync_store = ThreadStore(db_client[async_store.collection.database.name]["threads"])
    only_sync = ThreadMemChatMessageHistory("s", store=sync_store)
    only_sync.add_messages([HumanMessage("x")])
    with pytest.raises(ConfigurationError, match="only a sync store"):
        await only_sync.aget_messages()
    with pytest.raises(ConfigurationError, match="only a sync store"):
        await only_sync.aadd_messages([HumanMessage("y")])
    with pytest.raises(ConfigurationError, match="only a sync store"):
        await only_sync.aclear()
    for only_async in (
        ThreadMemChatMessageHistory("s", store=async_store),
        ThreadMemChatMessageHistory("s", async_store=async_store),
    ):
        assert await only_async.aget_messages() == [HumanMessage("x")]
        with pytest.raises(ConfigurationError, match="only an async store"):
            _ = only_async.messages
        with pytest.raises(ConfigurationError, match="only an async store"):
            only_async.add_messages([HumanMessage("y")])
        with pytest.raises(ConfigurationError, match="only an async store"):
            only_async.clear()
    assert only_sync.messages == [HumanMessage("x")]


@pytest.mark.asyncio
async def test_the_async_methods_are_the_adapters_own(async_store: AsyncThreadStore) -> None:
    for name in ("aget_messages", "aadd_messages", "aclear"):
        assert getattr(ThreadMemChatMessageHistory, name) is not getattr(
            BaseChatMessageHistory, name
        )
    # With the sync API unusable, the async methods still work: they do not call it.
    history = ThreadMemChatMessageHistory("own", store=async_store)
    await history.aadd_messages([HumanMessage("a")])
    assert await history.aget_messages() == [HumanMessage("a")]
    await history.aclear()
    assert await AsyncRoleThread.find(id="own", store=async_store) == []


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"session_id": ""}, "session_id"),
        ({"session_id": None}, "session_id"),
        ({"session_id": "s", "owner_id": 3}, "owner_id"),
        ({"session_id": "s", "store": "mongodb://x"}, "store"),
        ({"session_id": "s", "async_store": object()}, "async_store"),
    ],
)
def test_bad_constructor_arguments_raise_invalid_input(
    kwargs: dict[str, Any], message: str
) -> None:
    arguments = dict(kwargs)
    session_id = arguments.pop("session_id")
    with pytest.raises(InvalidInputError, match=message):
        ThreadMemChatMessageHistory(session_id, **arguments)


@pytest.mark.asyncio
async def test_two_async_stores_raise_invalid_input(async_store: AsyncThreadStore) -> None:
    with pytest.raises(InvalidInputError, match="not both"):
        ThreadMemChatMessageHistory("s", store=async_store, async_store=async_store)


BAD_BATCHES = [
    pytest.param(HumanMessage("a lone message"), id="not-a-sequence"),
    pytest.param("text", id="a-string"),
    pytest.param([HumanMessage("ok"), "not a message"], id="item-not-a-message"),
    pytest.param([HumanMessage("ok"), {"role": "user", "content": "x"}], id="a-dict"),
    pytest.param([HumanMessage("ok"), AIMessage("x", additional_kwargs={"s": {1}})], id="not-json"),
]


@pytest.mark.parametrize("batch", BAD_BATCHES)
def test_bad_messages_raise_invalid_input_and_write_nothing(
    store: ThreadStore, raw: Raw, batch: Any
) -> None:
    history = ThreadMemChatMessageHistory("bad", store=store)
    history.add_messages([HumanMessage("kept")])
    with pytest.raises(InvalidInputError):
        history.add_messages(batch)
    assert history.messages == [HumanMessage("kept")]
    assert raw.find_one({"_id": "bad"})["message_count"] == 1  # type: ignore[index]


@pytest.mark.asyncio
@pytest.mark.parametrize("batch", BAD_BATCHES)
async def test_bad_messages_raise_invalid_input_and_write_nothing_async(
    async_store: AsyncThreadStore, async_raw: Raw, batch: Any
) -> None:
    history = ThreadMemChatMessageHistory("bad", store=async_store)
    await history.aadd_messages([HumanMessage("kept")])
    with pytest.raises(InvalidInputError):
        await history.aadd_messages(batch)
    assert await history.aget_messages() == [HumanMessage("kept")]
    assert async_raw.find_one({"_id": "bad"})["message_count"] == 1  # type: ignore[index]


#: Batches of the wrong type that ``InMemoryChatMessageHistory`` refuses with a TypeError
#: (it iterates them); it stores anything iterable, so the other bad batches above have
#: no TypeError to match.
NOT_ITERABLE = [pytest.param(5, id="a-number"), pytest.param(None, id="none")]


def assert_input_type_error(raised: pytest.ExceptionInfo[InputTypeError]) -> None:
    assert isinstance(raised.value, TypeError)
    assert isinstance(raised.value, InvalidInputError)


@pytest.mark.parametrize("batch", NOT_ITERABLE)
def test_a_batch_langchain_refuses_with_type_error_raises_input_type_error(
    store: ThreadStore, raw: Raw, batch: Any
) -> None:
    with pytest.raises(TypeError):
        reference_history().add_messages(batch)
    history = ThreadMemChatMessageHistory("bad", store=store)
    history.add_messages([HumanMessage("kept")])
    before = raw.find_one({"_id": "bad"})
    with pytest.raises(InputTypeError) as raised:
        history.add_messages(batch)
    assert_input_type_error(raised)
    assert raw.find_one({"_id": "bad"}) == before


@pytest.mark.asyncio
@pytest.mark.parametrize("batch", NOT_ITERABLE)
async def test_a_batch_langchain_refuses_with_type_error_raises_input_type_error_async(
    async_store: AsyncThreadStore, async_raw: Raw, batch: Any
) -> None:
    with pytest.raises(TypeError):
        await reference_history().aadd_messages(batch)
    history = ThreadMemChatMessageHistory("bad", store=async_store)
    await history.aadd_messages([HumanMessage("kept")])
    before = async_raw.find_one({"_id": "bad"})
    with pytest.raises(InputTypeError) as raised:
        await history.aadd_messages(batch)
    assert_input_type_error(raised)
    assert async_raw.find_one({"_id": "bad"}) == before


# -- concurrency --------------------------------------------------------------------------

# Each writer's batch can be refused at most once per other writer, fewer times than
# the 10 refusals after which a batch is appended message by message.
WRITERS = 10
EACH = 5


def assert_all_landed_in_writer_order(messages: list[BaseMessage]) -> None:
    texts = [str(m.content) for m in messages]
    assert sorted(texts) == sorted(f"{w}:{k}" for w in range(WRITERS) for k in range(EACH))
    for w in range(WRITERS):
        assert [t for t in texts if t.startswith(f"{w}:")] == [f"{w}:{k}" for k in range(EACH)]


def assert_each_batch_contiguous(messages: list[BaseMessage]) -> None:
    texts = [str(m.content) for m in messages]
    for w in range(WRITERS):
        start = texts.index(f"{w}:0")
        assert texts[start : start + EACH] == [f"{w}:{k}" for k in range(EACH)]


@pytest.mark.asyncio
async def test_concurrent_async_appends_from_tasks_all_land(async_store: AsyncThreadStore) -> None:
    async def write(writer: int) -> None:
        history = ThreadMemChatMessageHistory("busy", store=async_store)
        await history.aadd_messages([HumanMessage(f"{writer}:{k}") for k in range(EACH)])

    await asyncio.gather(*(write(w) for w in range(WRITERS)))
    messages = await ThreadMemChatMessageHistory("busy", store=async_store).aget_messages()
    assert_all_landed_in_writer_order(messages)
    assert_each_batch_contiguous(messages)


@pytest.mark.wire
@pytest.mark.parametrize("backend", ["wire"], indirect=True)
def test_concurrent_sync_appends_from_threads_all_land(store: ThreadStore) -> None:
    # On the wire only: mongomock is not thread-safe (tasks cover it above).
    barrier = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            barrier.wait()
            history = ThreadMemChatMessageHistory("busy", store=store)
            history.add_messages([HumanMessage(f"{writer}:{k}") for k in range(EACH)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    messages = ThreadMemChatMessageHistory("busy", store=store).messages
    assert_all_landed_in_writer_order(messages)
    assert_each_batch_contiguous(messages)


PROCESS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from langchain_core.messages import HumanMessage, message_to_dict
    from threadmem_mongo.integrations.langchain import ThreadMemChatMessageHistory

    mode, session_id, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    history = ThreadMemChatMessageHistory(session_id)
    if mode == "add":
        for k in range(count):
            history.add_messages([HumanMessage(f"{worker}:{k}")])
        print("[]")
    else:
        print(json.dumps([message_to_dict(m) for m in history.messages]))
    """
)


def spawn(
    uri: str, database: str, mode: str, session_id: str, worker: int = 0, count: int = 0
) -> subprocess.Popen[str]:
    env = {**os.environ, "THREADMEM_MONGODB_URI": uri, "THREADMEM_DATABASE": database}
    return subprocess.Popen(
        [sys.executable, "-c", PROCESS_SCRIPT, mode, session_id, str(worker), str(count)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def collect(process: subprocess.Popen[str]) -> Any:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return json.loads(out)


@pytest.mark.wire
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["wire"], indirect=True)
def test_processes_appending_lose_nothing(store: ThreadStore, wire_uri: str) -> None:
    database = store.collection.database.name
    writers = [spawn(wire_uri, database, "add", "shared", w, EACH) for w in range(WRITERS)]
    for process in writers:
        collect(process)
    assert_all_landed_in_writer_order(ThreadMemChatMessageHistory("shared", store=store).messages)


# -- the agent loop -----------------------------------------------------------------------


@tool
def count_cats(street: str) -> str:
    """Count the cats in a street.

    Args:
        street: The street.
    """
    return f"3 cats in {street}"


def scripted_model() -> GenericFakeChatModel:
    return GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(
                    content="",
                    tool_calls=[{"name": "count_cats", "args": {"street": "Elm"}, "id": "call-7"}],
                    usage_metadata={"input_tokens": 5, "output_tokens": 3, "total_tokens": 8},
                ),
                AIMessage("There are 3 cats in Elm street."),
                AIMessage("You asked about cats."),
            ]
        )
    )


async def tool_loop(
    history: BaseChatMessageHistory, model: GenericFakeChatModel, question: str
) -> str:
    """A minimal agent loop: the model answers from the stored history, tools run until
    it stops calling them, and every step is appended to the history."""
    await history.aadd_messages([HumanMessage(question)])
    while True:
        reply = await model.ainvoke(await history.aget_messages())
        assert isinstance(reply, AIMessage)
        await history.aadd_messages([reply])
        if not reply.tool_calls:
            return str(reply.content)
        outputs = [await count_cats.ainvoke(call) for call in reply.tool_calls]
        await history.aadd_messages(outputs)


@pytest.mark.asyncio
async def test_a_tool_calling_loop_persists_like_the_in_memory_history(
    async_store: AsyncThreadStore,
) -> None:
    reference = reference_history()
    assert await tool_loop(reference, scripted_model(), "How many cats in Elm?") == (
        "There are 3 cats in Elm street."
    )
    history = ThreadMemChatMessageHistory("cats", owner_id="alice")
    model = scripted_model()
    assert await tool_loop(history, model, "How many cats in Elm?") == (
        "There are 3 cats in Elm street."
    )
    assert await tool_loop(history, model, "What did I ask?") == "You asked about cats."
    messages = await history.aget_messages()
    assert [type(m).__name__ for m in messages] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
        "HumanMessage",
        "AIMessage",
    ]
    # The run ids the fake model stamps differ between runs; the rest is the same.
    expected = [m.model_copy(update={"id": None}) for m in reference.messages]
    assert [m.model_copy(update={"id": None}) for m in messages[:4]] == expected
    tool_message = messages[2]
    assert isinstance(tool_message, ToolMessage)
    assert (tool_message.tool_call_id, tool_message.content) == ("call-7", "3 cats in Elm")


@pytest.mark.asyncio
async def test_runnable_with_message_history_uses_the_native_async_methods(
    async_store: AsyncThreadStore,
) -> None:
    histories: dict[str, ThreadMemChatMessageHistory] = {}

    def history_for(session_id: str) -> ThreadMemChatMessageHistory:
        # Only the async store: a sync call (the executor fallback) would raise.
        return histories.setdefault(
            session_id, ThreadMemChatMessageHistory(session_id, store=async_store)
        )

    prompt = ChatPromptTemplate.from_messages(
        [("system", "Be brief."), MessagesPlaceholder("history"), ("human", "{question}")]
    )
    model = GenericFakeChatModel(messages=iter(["Hello Ann.", "Your name is Ann."]))
    # Deprecated since langchain-core 1.3.3 in favour of LangGraph persistence, which
    # is not a dependency here; it is still the documented way to drive a history.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", category=LangChainDeprecationWarning, message=".*RunnableWithMessageHistory"
        )
        chain = RunnableWithMessageHistory(
            prompt | model,
            history_for,
            input_messages_key="question",
            history_messages_key="history",
        )
    config: Any = {"configurable": {"session_id": "ann"}}
    first = await chain.ainvoke({"question": "I am Ann."}, config=config)
    second = await chain.ainvoke({"question": "Who am I?"}, config=config)
    assert (first.content, second.content) == ("Hello Ann.", "Your name is Ann.")
    stored = await ThreadMemChatMessageHistory("ann", store=async_store).aget_messages()
    assert [(type(m).__name__, m.content) for m in stored] == [
        ("HumanMessage", "I am Ann."),
        ("AIMessage", "Hello Ann."),
        ("HumanMessage", "Who am I?"),
        ("AIMessage", "Your name is Ann."),
    ]


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_conversation_is_read_back_by_a_second_process(
    async_store: AsyncThreadStore, backend: str, request: pytest.FixtureRequest
) -> None:
    history = ThreadMemChatMessageHistory("reload")
    model = scripted_model()
    await tool_loop(history, model, "How many cats in Elm?")
    messages = await history.aget_messages()
    assert len(messages) == 4
    if backend == "mongomock":
        assert ThreadMemChatMessageHistory("reload").messages == messages
        return
    uri = request.getfixturevalue("wire_uri" if backend == "wire" else "external_uri")
    reloaded = collect(spawn(uri, async_store.collection.database.name, "get", "reload"))
    assert reloaded == [message_to_dict(m) for m in messages]


def test_remove_message_round_trips(store: ThreadStore) -> None:
    history = ThreadMemChatMessageHistory("remove", store=store)
    history.add_messages([RemoveMessage(id="ai-1")])
    assert history.messages == [RemoveMessage(id="ai-1")]
