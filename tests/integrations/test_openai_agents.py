"""``ThreadMemSession``: the Agents SDK session protocol on a thread, on every backend.

Operation sequences run on our session and on the SDK's own ``SQLiteSession`` (in
memory) and must give the same results step by step; the stored thread is checked to be
an ordinary, readable thread; concurrent tasks and processes lose and repeat nothing;
and ``Runner.run`` with a scripted model persists a tool-using run that a second
process (or a second session object, on mongomock) reads back whole.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agents import (
    Agent,
    Model,
    ModelResponse,
    ModelSettings,
    ModelTracing,
    RunConfig,
    Runner,
    SQLiteSession,
    Usage,
    function_tool,
)
from agents.extensions.memory.mongodb_session import MongoDBSession
from agents.memory import Session, SessionSettings
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)
from pymongo.collection import Collection

from threadmem_mongo import (
    ImageNotFoundError,
    InputTypeError,
    InvalidInputError,
    RoleThread,
    ThreadTooLargeError,
)
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore
from threadmem_mongo.integrations.openai_agents import (
    METADATA_KEY,
    THREAD_METADATA,
    ThreadMemSession,
)

pytestmark = pytest.mark.asyncio

Item = dict[str, Any]
Raw = Collection[dict[str, Any]]

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4).decode()
SMALL_IMAGE = f"data:image/png;base64,{PNG}"
LARGE_IMAGE = f"data:image/png;base64,{PNG * 60}"  # over the 32 KiB GridFS threshold
URL_IMAGE = "https://example.com/cat.png"


def user(text: str) -> Item:
    return {"role": "user", "content": text}


def assistant(text: str, item_id: str = "msg_1") -> Item:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def function_call(call_id: str = "call_1") -> Item:
    return {
        "type": "function_call",
        "call_id": call_id,
        "name": "get_weather",
        "arguments": json.dumps({"city": "Paris"}),
        "id": "fc_1",
        "status": "completed",
    }


def function_output(call_id: str = "call_1", output: Any = "sunny, 21 C") -> Item:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def reasoning() -> Item:
    return {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "Look the weather up first."}],
        "encrypted_content": "opaque==",
    }


def image_message(*urls: str, text: str = "What is on these pictures? <image>") -> Item:
    parts: list[Item] = [{"type": "input_text", "text": text}]
    parts += [{"type": "input_image", "image_url": url, "detail": "auto"} for url in urls]
    return {"role": "user", "content": parts}


# -- the differential runner -------------------------------------------------------------

Op = tuple[Any, ...]


async def run_ops(session: Session, ops: list[Op]) -> list[Any]:
    """Run ``ops`` on ``session`` and return what each one observably gave."""
    results: list[Any] = []
    for op in ops:
        name = op[0]
        if name == "add":
            results.append(await session.add_items(op[1]))
        elif name == "get":
            results.append(await session.get_items(*op[1:]))
        elif name == "pop":
            results.append(await session.pop_item())
        elif name == "clear":
            results.append(await session.clear_session())
        else:  # pragma: no cover - a typo in a sequence
            raise AssertionError(f"unknown op {name}")
    return results


SEQUENCES: dict[str, list[Op]] = {
    "empty_session": [("get",), ("get", 3), ("get", 0), ("pop",), ("clear",), ("get",)],
    "limits": [
        ("add", [user("one"), assistant("two"), user("three")]),
        ("add", [assistant("four", "msg_2")]),
        ("get",),
        ("get", 1),
        ("get", 2),
        ("get", 4),
        ("get", 10),
        ("get", 0),
        ("get", -1),
    ],
    "pop_until_empty": [
        ("add", [user("a"), assistant("b")]),
        ("pop",),
        ("get",),
        ("pop",),
        ("pop",),
        ("get",),
        ("add", [user("c")]),
        ("get",),
    ],
    "clear_and_reuse": [
        ("add", [user("before"), assistant("reply")]),
        ("clear",),
        ("get",),
        ("pop",),
        ("clear",),
        ("add", [user("after")]),
        ("get",),
    ],
    "tool_round_trip": [
        ("add", [user("Weather in Paris?"), reasoning(), function_call()]),
        ("add", [function_output(), assistant("It is sunny.")]),
        ("get",),
        ("get", 2),
        ("pop",),
        ("get",),
    ],
    "empty_add_is_a_no_op": [("add", []), ("get",), ("add", [user("x")]), ("add", []), ("get",)],
    "unicode_and_awkward_keys": [
        (
            "add",
            [
                user("héllo wörld — 你好 🌍 \u0000 <image>"),
                {"role": "user", "content": "", "$weird": {"a.b": [1, {"$c": None}]}},
                assistant(""),
                {"type": "custom_tool_call", "input": "\ud800 lone surrogate"},
            ],
        ),
        ("get",),
        ("pop",),
        ("pop",),
        ("get",),
    ],
    "large_items": [
        ("add", [user("x" * 300_000), function_output(output="y" * 200_000)]),
        ("get", 1),
        ("pop",),
        ("get",),
    ],
    "images": [
        (
            "add",
            [
                image_message(SMALL_IMAGE, URL_IMAGE),
                image_message(LARGE_IMAGE, text="big"),
                image_message("not-an-image-url", text="kept inline"),
                function_output(
                    output=[{"type": "input_image", "image_url": LARGE_IMAGE, "detail": "low"}]
                ),
            ],
        ),
        ("get",),
        ("get", 2),
        ("pop",),
        ("pop",),
        ("get",),
    ],
}


@pytest.mark.parametrize("sequence", sorted(SEQUENCES))
async def test_sequences_match_sqlite_session(async_store: AsyncThreadStore, sequence: str) -> None:
    ops = SEQUENCES[sequence]
    reference = SQLiteSession(f"ref-{sequence}")
    try:
        expected = await run_ops(reference, ops)
    finally:
        reference.close()
    ours = ThreadMemSession(f"ours-{sequence}", store=async_store)
    assert await run_ops(ours, ops) == expected


@pytest.mark.parametrize("settings", [SessionSettings(limit=2), {"limit": 2}])
async def test_session_settings_limit_applies_when_get_items_has_none(
    async_store: AsyncThreadStore, settings: Any
) -> None:
    ops: list[Op] = [
        ("add", [user("1"), user("2"), user("3")]),
        ("get",),
        ("get", 3),
        ("get", 1),
    ]
    reference = SQLiteSession("ref", session_settings=settings)
    try:
        expected = await run_ops(reference, ops)
    finally:
        reference.close()
    ours = ThreadMemSession("ours", store=async_store, session_settings=settings)
    assert ours.session_settings == SessionSettings(limit=2)
    assert await run_ops(ours, ops) == expected
    assert expected[1] == [user("2"), user("3")]


# -- what is stored -----------------------------------------------------------------------


async def test_items_are_readable_messages_of_the_thread_named_by_session_id(
    async_store: AsyncThreadStore, async_raw: Raw
) -> None:
    session = ThreadMemSession("chat-1", store=async_store, owner_id="alice")
    await session.add_items(
        [user("Weather in Paris?"), function_call(), function_output(), assistant("Sunny.")]
    )
    thread = await AsyncRoleThread.get("chat-1", store=async_store)
    assert thread.owner_id == "alice"
    assert thread.metadata == THREAD_METADATA
    assert [(m.role, m.text) for m in await thread.messages()] == [
        ("user", "Weather in Paris?"),
        ("assistant", 'get_weather({"city": "Paris"})'),
        ("tool", "sunny, 21 C"),
        ("assistant", "Sunny."),
    ]
    assert (await thread.to_openai())["messages"][0] == {
        "role": "user",
        "content": "Weather in Paris?",
    }
    stored = (await thread.messages())[1].metadata
    assert stored is not None
    assert json.loads(stored[METADATA_KEY]["item"]) == function_call()
    # The sync API reads the same thread.
    assert RoleThread.get("chat-1").message_count == 4


async def test_images_go_through_the_image_path_and_large_ones_to_gridfs(
    async_store: AsyncThreadStore, async_raw: Raw
) -> None:
    session = ThreadMemSession("pics", store=async_store)
    item = image_message(SMALL_IMAGE, LARGE_IMAGE, URL_IMAGE)
    await session.add_items([item])
    doc = async_raw.find_one({"_id": "pics"})
    assert doc is not None
    images = doc["messages"][0]["images"]
    assert images[0] == SMALL_IMAGE
    assert images[1].startswith("gridfs:")
    assert images[2] == URL_IMAGE
    assert LARGE_IMAGE not in doc["messages"][0]["metadata"][METADATA_KEY]["item"]
    assert doc["messages"][0]["text"] == "What is on these pictures? [image]"
    assert await session.get_items() == [item]
    openai = (await (await AsyncRoleThread.get("pics", store=async_store)).to_openai())["messages"]
    assert [part["type"] for part in openai[0]["content"]] == [
        "text",
        "image_url",
        "image_url",
        "image_url",
    ]
    assert await session.pop_item() == item
    with pytest.raises(ImageNotFoundError):  # the pop released the blob
        await async_store.blobs.read(images[1].split(":", 1)[1])


async def test_messages_posted_without_the_adapter_read_as_input_messages(
    async_store: AsyncThreadStore,
) -> None:
    thread = await AsyncRoleThread.create(store=async_store)
    await thread.post(role="user", msg="plain")
    await thread.post(role="bot-7", msg="from another bot")
    await thread.post(role="assistant", msg="look", images=[URL_IMAGE])
    session = ThreadMemSession(thread.id, store=async_store)
    assert await session.get_items() == [
        {"role": "user", "content": "plain"},
        {"role": "user", "content": "from another bot"},
        {
            "role": "assistant",
            "content": [
                {"type": "input_text", "text": "look"},
                {"type": "input_image", "image_url": URL_IMAGE, "detail": "auto"},
            ],
        },
    ]


async def test_an_existing_thread_keeps_its_owner_and_sessions_are_listed_by_metadata(
    async_store: AsyncThreadStore,
) -> None:
    await ThreadMemSession("first", store=async_store, owner_id="alice").add_items([user("a")])
    await ThreadMemSession("first", store=async_store, owner_id="bob").add_items([user("b")])
    await ThreadMemSession("second", store=async_store).add_items([user("c")])
    await AsyncRoleThread.create(name="not a session", store=async_store)
    thread = await AsyncRoleThread.get("first", store=async_store)
    assert thread.owner_id == "alice"
    listed = await AsyncRoleThread.find(metadata=THREAD_METADATA, store=async_store)
    assert sorted(t.id for t in listed) == ["first", "second"]


async def test_a_batch_too_large_for_the_thread_raises_and_writes_nothing(
    async_store: AsyncThreadStore,
) -> None:
    huge = user("x" * (17 * 1024 * 1024))
    session = ThreadMemSession("huge", store=async_store)
    with pytest.raises(ThreadTooLargeError):  # creating the thread
        await session.add_items([user("small"), huge])
    assert await session.get_items() == []
    await session.add_items([user("first")])
    with pytest.raises(ThreadTooLargeError):  # appending to it
        await session.add_items([user("second"), huge, user("third")])
    assert await session.get_items() == [user("first")]


async def test_clears_racing_appends_raise_nothing_and_leave_whole_items(
    async_store: AsyncThreadStore,
) -> None:
    async def append(writer: int) -> None:
        for k in range(10):
            await ThreadMemSession("churn", store=async_store).add_items(
                [user(f"{writer}:{k}:a"), user(f"{writer}:{k}:b")]
            )

    async def clear() -> None:
        for _ in range(10):
            await ThreadMemSession("churn", store=async_store).clear_session()

    await asyncio.gather(append(0), append(1), clear())
    await ThreadMemSession("churn", store=async_store).add_items([user("last")])
    items = await ThreadMemSession("churn", store=async_store).get_items()
    texts = [item["content"] for item in items]
    assert texts[-1] == "last"
    assert len(texts) == len(set(texts))
    assert all(t == "last" or t.rsplit(":", 1)[1] in ("a", "b") for t in texts)


async def test_without_store_the_aio_default_store_is_used(
    async_store: AsyncThreadStore, async_raw: Raw
) -> None:
    session = ThreadMemSession("default-one")
    assert session.store is None
    await session.add_items([user("hi")])
    assert async_raw.count_documents({"_id": "default-one"}) == 1
    assert await ThreadMemSession("default-one", store=async_store).get_items() == [user("hi")]


async def test_is_a_session_of_the_sdk_protocol(async_store: AsyncThreadStore) -> None:
    session = ThreadMemSession("protocol", store=async_store)
    assert isinstance(session, Session)
    assert session.session_id == "protocol"
    assert session.session_settings == SessionSettings()


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"session_id": ""}, "session_id"),
        ({"session_id": 7}, "session_id"),
        ({"session_id": "s", "owner_id": 7}, "owner_id"),
        ({"session_id": "s", "store": object()}, "AsyncThreadStore"),
        ({"session_id": "s", "session_settings": 3}, "session_settings"),
        ({"session_id": "s", "session_settings": {"limit": "many"}}, "session_settings"),
    ],
)
async def test_bad_constructor_arguments_raise_invalid_input(
    async_store: AsyncThreadStore, kwargs: dict[str, Any], message: str
) -> None:
    arguments = dict(kwargs)
    session_id = arguments.pop("session_id")
    with pytest.raises(InvalidInputError, match=message):
        ThreadMemSession(session_id, **arguments)


@pytest.mark.parametrize(
    "items",
    [
        pytest.param((user("tuple"),), id="not-a-list"),
        pytest.param([user("ok"), "not a dict"], id="item-not-a-dict"),
        pytest.param([user("ok"), {"role": "user", "content": {1, 2}}], id="not-json"),
    ],
)
async def test_bad_items_raise_invalid_input_and_write_nothing(
    async_store: AsyncThreadStore, async_raw: Raw, items: Any
) -> None:
    session = ThreadMemSession("bad", store=async_store)
    await session.add_items([user("kept")])
    with pytest.raises(InvalidInputError):
        await session.add_items(items)
    assert await session.get_items() == [user("kept")]
    assert async_raw.find_one({"_id": "bad"})["message_count"] == 1  # type: ignore[index]


@pytest.mark.parametrize("limit", ["3", True, 2.0])
async def test_bad_limit_raises_invalid_input(async_store: AsyncThreadStore, limit: Any) -> None:
    with pytest.raises(InvalidInputError, match="limit"):
        await ThreadMemSession("s", store=async_store).get_items(limit)


#: Constructor arguments of the wrong type that the SDK's own sessions refuse with a
#: TypeError: each is passed to a reference session's constructor, then to ours.
WRONG_CONSTRUCTOR_TYPES: dict[str, tuple[Any, dict[str, Any]]] = {
    # SQLiteSession stores any session id; MongoDBSession, the SDK's MongoDB store,
    # refuses one that is not a string.
    "session_id": (MongoDBSession, {"session_id": 7}),
    "session_settings of another type": (SQLiteSession, {"session_settings": 3}),
    "session_settings with an unknown field": (SQLiteSession, {"session_settings": {"x": 1}}),
}

#: Method calls with an argument of the wrong type that ``SQLiteSession`` refuses with
#: a TypeError.
WRONG_METHOD_TYPES: dict[str, tuple[str, Any]] = {
    "get_items limit": ("get_items", "3"),
    "add_items not iterable": ("add_items", 5),
    "add_items value JSON has no form for": ("add_items", [{"role": "user", "content": {1}}]),
}


def assert_input_type_error(raised: pytest.ExceptionInfo[InputTypeError]) -> None:
    assert isinstance(raised.value, TypeError)
    assert isinstance(raised.value, InvalidInputError)


@pytest.mark.parametrize("name", sorted(WRONG_CONSTRUCTOR_TYPES))
async def test_a_constructor_argument_the_sdk_refuses_with_type_error_raises_input_type_error(
    async_store: AsyncThreadStore, name: str
) -> None:
    reference, arguments = WRONG_CONSTRUCTOR_TYPES[name]
    arguments = {"session_id": "s", **arguments}
    extra = (
        {"client": async_store.collection.database.client} if reference is MongoDBSession else {}
    )
    with pytest.raises(TypeError):
        reference(**arguments, **extra)
    with pytest.raises(InputTypeError) as raised:
        ThreadMemSession(**arguments, store=async_store)
    assert_input_type_error(raised)


@pytest.mark.parametrize("name", sorted(WRONG_METHOD_TYPES))
async def test_a_method_argument_the_sdk_refuses_with_type_error_raises_input_type_error(
    async_store: AsyncThreadStore, async_raw: Raw, name: str
) -> None:
    method, argument = WRONG_METHOD_TYPES[name]
    reference = SQLiteSession("s")
    try:
        await reference.add_items([user("kept")])
        with pytest.raises(TypeError):
            await getattr(reference, method)(argument)
    finally:
        reference.close()
    session = ThreadMemSession("s", store=async_store)
    await session.add_items([user("kept")])
    before = list(async_raw.find({}))
    with pytest.raises(InputTypeError) as raised:
        await getattr(session, method)(argument)
    assert_input_type_error(raised)
    assert list(async_raw.find({})) == before


# -- concurrency --------------------------------------------------------------------------

# Each writer's batch can be refused at most once per other writer, fewer times than
# the 10 refusals after which a batch is appended item by item: every batch must land
# whole and contiguous.
WRITERS = 8
ITEMS_EACH = 5


async def test_concurrent_add_items_from_tasks_all_land_each_batch_contiguous(
    async_store: AsyncThreadStore,
) -> None:
    async def write(writer: int) -> None:
        session = ThreadMemSession("busy", store=async_store)
        await session.add_items([user(f"{writer}:{k}") for k in range(ITEMS_EACH)])

    await asyncio.gather(*(write(w) for w in range(WRITERS)))
    texts = [
        item["content"] for item in await ThreadMemSession("busy", store=async_store).get_items()
    ]
    assert sorted(texts) == sorted(f"{w}:{k}" for w in range(WRITERS) for k in range(ITEMS_EACH))
    for w in range(WRITERS):
        start = texts.index(f"{w}:0")
        assert texts[start : start + ITEMS_EACH] == [f"{w}:{k}" for k in range(ITEMS_EACH)]


async def test_concurrent_pops_never_return_the_same_item(async_store: AsyncThreadStore) -> None:
    total = 24
    await ThreadMemSession("pops", store=async_store).add_items(
        [user(str(k)) for k in range(total)]
    )

    async def pop_all() -> list[Any]:
        session = ThreadMemSession("pops", store=async_store)
        popped = []
        while (item := await session.pop_item()) is not None:
            popped.append(item["content"])
        return popped

    results = await asyncio.gather(*(pop_all() for _ in range(6)))
    popped = [text for result in results for text in result]
    assert sorted(popped, key=int) == [str(k) for k in range(total)]
    for result in results:  # each task saw the items newest first
        assert [int(t) for t in result] == sorted((int(t) for t in result), reverse=True)
    assert await ThreadMemSession("pops", store=async_store).get_items() == []


async def test_pops_racing_appends_lose_nothing(async_store: AsyncThreadStore) -> None:
    session = ThreadMemSession("race", store=async_store)
    await session.add_items([user("seed")])
    popped: list[Any] = []

    async def append() -> None:
        for k in range(20):
            await ThreadMemSession("race", store=async_store).add_items([user(f"a{k}")])

    async def pop() -> None:
        for _ in range(10):
            item = await ThreadMemSession("race", store=async_store).pop_item()
            if item is not None:
                popped.append(item["content"])

    await asyncio.gather(append(), pop(), pop())
    left = [item["content"] for item in await session.get_items()]
    assert len(popped) == len(set(popped))
    assert sorted(popped + left) == sorted(["seed"] + [f"a{k}" for k in range(20)])


PROCESS_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from threadmem_mongo.integrations.openai_agents import ThreadMemSession

    async def main(mode, session_id, worker, count):
        session = ThreadMemSession(session_id)
        if mode == "add":
            for k in range(count):
                await session.add_items([{"role": "user", "content": f"{worker}:{k}"}])
            print(json.dumps([]))
        elif mode == "pop":
            popped = []
            while (item := await session.pop_item()) is not None:
                popped.append(item)
            print(json.dumps(popped))
        else:
            print(json.dumps(await session.get_items()))

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
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
async def test_processes_appending_and_popping_lose_and_repeat_nothing(
    async_store: AsyncThreadStore, wire_uri: str
) -> None:
    database = async_store.collection.database.name
    writers = [spawn(wire_uri, database, "add", "shared", w, 15) for w in range(4)]
    for process in writers:
        collect(process)
    items = await ThreadMemSession("shared", store=async_store).get_items()
    texts = [item["content"] for item in items]
    assert sorted(texts) == sorted(f"{w}:{k}" for w in range(4) for k in range(15))
    for w in range(4):
        assert [t for t in texts if t.startswith(f"{w}:")] == [f"{w}:{k}" for k in range(15)]
    poppers = [spawn(wire_uri, database, "pop", "shared") for _ in range(3)]
    popped = [item["content"] for process in poppers for item in collect(process)]
    assert sorted(popped) == sorted(texts)
    assert await ThreadMemSession("shared", store=async_store).get_items() == []


# -- the agent loop -----------------------------------------------------------------------


class ScriptedModel(Model):
    """A model that answers with canned outputs, in order, and records what it was sent."""

    def __init__(self, outputs: list[list[Any]]) -> None:
        self.outputs = list(outputs)
        self.inputs: list[Any] = []

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[Any],
        model_settings: ModelSettings,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: Any,
    ) -> ModelResponse:
        self.inputs.append(json.loads(json.dumps(input, default=str)))
        return ModelResponse(output=self.outputs.pop(0), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the tests run the model without streaming")


def text_output(text: str, item_id: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id=item_id,
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


def tool_call_output(call_id: str, city: str) -> ResponseFunctionToolCall:
    return ResponseFunctionToolCall(
        id=f"fc_{call_id}",
        type="function_call",
        call_id=call_id,
        name="get_weather",
        arguments=json.dumps({"city": city}),
        status="completed",
    )


@function_tool
def get_weather(city: str) -> str:
    """Return the weather in a city.

    Args:
        city: The city.
    """
    return f"sunny in {city}"


def weather_agent(model: ScriptedModel) -> Agent[Any]:
    return Agent(
        name="forecaster", instructions="Answer briefly.", model=model, tools=[get_weather]
    )


def script() -> list[list[Any]]:
    return [
        [tool_call_output("call_a", "Paris")],
        [text_output("It is sunny in Paris.", "msg_a")],
        [text_output("You asked about Paris.", "msg_b")],
    ]


async def two_turns(session: Session) -> tuple[ScriptedModel, list[str]]:
    model = ScriptedModel(script())
    agent = weather_agent(model)
    # No tracing: it would try to export spans to OpenAI.
    config = RunConfig(tracing_disabled=True)
    first = await Runner.run(agent, "Weather in Paris?", session=session, run_config=config)
    second = await Runner.run(agent, "What did I ask?", session=session, run_config=config)
    return model, [str(first.final_output), str(second.final_output)]


async def test_runner_persists_a_tool_using_run_like_sqlite_session(
    async_store: AsyncThreadStore,
) -> None:
    reference = SQLiteSession("agent-ref")
    try:
        ref_model, ref_outputs = await two_turns(reference)
        ref_items = await reference.get_items()
    finally:
        reference.close()
    session = ThreadMemSession("agent-run", store=async_store, owner_id="alice")
    model, outputs = await two_turns(session)
    assert outputs == ref_outputs == ["It is sunny in Paris.", "You asked about Paris."]
    items = await session.get_items()
    assert items == ref_items
    # The second turn was sent the first turn's history, tool call and output included.
    assert model.inputs == ref_model.inputs
    types = [item.get("type", "message") for item in items]
    assert types.count("function_call") == 1
    assert types.count("function_call_output") == 1
    output = next(item for item in items if item.get("type") == "function_call_output")
    assert output["output"] == "sunny in Paris"
    assert "sunny in Paris" in json.dumps(model.inputs[-1])


@pytest.mark.slow
async def test_a_run_is_read_back_by_a_second_session(
    async_store: AsyncThreadStore, backend: str, request: pytest.FixtureRequest
) -> None:
    session = ThreadMemSession("agent-reload", store=async_store)
    await two_turns(session)
    items = await session.get_items()
    assert len(items) == 6  # two user turns, a tool call, its output, two answers
    if backend == "mongomock":
        again = ThreadMemSession("agent-reload", store=async_store)
        assert await again.get_items() == items
        return
    uri = request.getfixturevalue("wire_uri" if backend == "wire" else "external_uri")
    reloaded = collect(spawn(uri, async_store.collection.database.name, "get", "agent-reload"))
    assert reloaded == items
