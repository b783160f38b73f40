"""The documentation: the site builds, its code runs, and the API reference is complete.

* ``mkdocs build --strict`` succeeds (broken links, missing pages, pages left out of the
  nav and mkdocstrings warnings all fail it).
* Every Python code block in README.md and docs/**/*.md runs, in order, one namespace per
  file, on a fresh in-memory store (``configure(uri="mongomock://")``), except those of
  the agent-framework pages (docs/integrations/), whose adapters are async and need a
  server: tests/test_integration_pages.py runs those on the embedded store. A block starting
  with ``>>>`` is a doctest (ELLIPSIS and NORMALIZE_WHITESPACE on); a block followed by a
  paragraph ``Output:`` and a code block must print exactly that block. A block whose
  previous non-blank line is ``<!-- not-run -->`` is skipped, and so is a block that only
  includes a file with ``--8<--`` (those files are run by their own tests below).
* Every name in ``threadmem_mongo.__all__`` is rendered by a ``::: threadmem_mongo.NAME``
  line in docs/reference/, and every name in ``threadmem_mongo.aio.__all__`` by a
  ``::: threadmem_mongo.aio.NAME`` line.
* The examples the guides include (migration, FastAPI app, two bots) work.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib.util
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import mongomock
import pytest

import threadmem_mongo
from threadmem_mongo import RoleThread, ThreadStore, V1Role, _config

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARKDOWN_FILES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
#: Run by tests/test_integration_pages.py on the embedded store, not here.
INTEGRATION_PAGES = sorted((DOCS / "integrations").glob("*.md"))
RUN_HERE = [path for path in MARKDOWN_FILES if path not in INTEGRATION_PAGES]
NOT_RUN = "<!-- not-run -->"
PYTHON_LANGUAGES = {"python", "py", "pycon", "python3"}
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
ENV_VARS = (
    "THREADMEM_MONGODB_URI",
    "MONGODB_URI",
    "THREADMEM_DATABASE",
    "THREADMEM_TIMEOUT",
    "THREADMEM_HOME",
)

FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")


# -- the site ----------------------------------------------------------------------------


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_api_reference_covers_every_public_name() -> None:
    rendered = set()
    for page in (DOCS / "reference").glob("*.md"):
        rendered.update(re.findall(r"^:::\s*threadmem_mongo\.(\w+)\s*$", page.read_text(), re.M))
    missing = sorted(set(threadmem_mongo.__all__) - rendered)
    assert not missing, f"not in docs/reference/*.md as '::: threadmem_mongo.NAME': {missing}"


def test_api_reference_covers_every_public_name_of_the_async_api() -> None:
    import threadmem_mongo.aio

    rendered = set()
    for page in (DOCS / "reference").glob("*.md"):
        rendered.update(
            re.findall(r"^:::\s*threadmem_mongo\.aio\.(\w+)\s*$", page.read_text(), re.M)
        )
    missing = sorted(set(threadmem_mongo.aio.__all__) - rendered)
    assert not missing, f"not in docs/reference/*.md as '::: threadmem_mongo.aio.NAME': {missing}"


def test_errors_page_shows_the_exception_tree() -> None:
    """The tree on the errors page has every error, each under its real base class."""
    page = (DOCS / "reference" / "errors.md").read_text()
    tree = next(b for b in code_blocks(page) if b.language == "text").code
    errors = {
        name: cls
        for name in threadmem_mongo.__all__
        if isinstance(cls := getattr(threadmem_mongo, name), type)
        and issubclass(cls, threadmem_mongo.ThreadMemError)
    }
    shown: dict[str, str | None] = {}  # error -> its parent in the tree
    stack: list[tuple[int, str]] = []
    for line in tree.splitlines():
        match = re.search(r"\b(\w+Error)\b", line)
        if match is None:
            continue
        column = match.start()
        while stack and stack[-1][0] >= column:
            stack.pop()
        shown[match[1]] = stack[-1][1] if stack else None
        stack.append((column, match[1]))
    expected = {
        name: next((base.__name__ for base in cls.__mro__[1:] if base in errors.values()), None)
        for name, cls in errors.items()
    }
    assert shown == expected


# -- code blocks -------------------------------------------------------------------------


@dataclass
class Block:
    """One fenced code block of a Markdown file."""

    language: str
    code: str
    line: int  # 1-based line of the first line of code
    not_run: bool
    after_output_label: bool


def code_blocks(text: str) -> list[Block]:
    """Return the fenced code blocks of Markdown ``text``, in order."""
    lines = text.splitlines()
    blocks: list[Block] = []
    previous: list[str] = []
    index = 0
    while index < len(lines):
        match = FENCE_OPEN.match(lines[index])
        if match is None:
            previous.append(lines[index])
            index += 1
            continue
        indent = len(match["indent"])
        fence = match["fence"]
        info = match["info"].strip().lstrip(".{").split()
        start = index + 1
        index = start
        while index < len(lines):
            stripped = lines[index].strip()
            if stripped.startswith(fence) and set(stripped) == {fence[0]}:
                break
            index += 1
        body = [
            line[indent:] if line[:indent].strip() == "" else line for line in lines[start:index]
        ]
        label = next((line.strip() for line in reversed(previous) if line.strip()), "")
        blocks.append(
            Block(
                language=info[0].lower() if info else "",
                code="\n".join(body) + "\n",
                line=start + 1,
                not_run=label == NOT_RUN,
                after_output_label=label.strip("*_") in ("Output:", "Output"),
            )
        )
        previous = []
        index += 1
    return blocks


def runnable(block: Block) -> bool:
    if block.language not in PYTHON_LANGUAGES or block.not_run:
        return False
    code_lines = [line for line in block.code.splitlines() if line.strip()]
    return not all(line.lstrip().startswith("--8<--") for line in code_lines)


@contextlib.contextmanager
def fresh_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A clean environment and an empty in-memory default store; reset afterwards."""
    with mock.patch.dict(os.environ):
        for name in ENV_VARS:
            os.environ.pop(name, None)
        os.environ["THREADMEM_HOME"] = str(tmp_path / "threadmem-home")
        monkeypatch.chdir(tmp_path)
        threadmem_mongo.configure(uri="mongomock://", database=f"docs_{uuid.uuid4().hex}")
        try:
            yield
        finally:
            _config.reset()


def run_doctest(block: Block, namespace: dict[str, Any], path: Path) -> None:
    name = f"{path.relative_to(ROOT)}:{block.line}"
    test = doctest.DocTestParser().get_doctest(
        block.code, namespace, name, str(path), block.line - 1
    )
    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS)
    result = runner.run(test, out=report.write, clear_globs=False)
    namespace.update(test.globs)  # DocTest runs in a copy; later blocks see its names
    if result.failed:
        pytest.fail(f"doctest failed in {name}:\n{report.getvalue()}", pytrace=False)


def run_script(block: Block, namespace: dict[str, Any], path: Path) -> str:
    code = compile("\n" * (block.line - 1) + block.code, str(path), "exec")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        exec(code, namespace)
    return stdout.getvalue()


def normalized(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


@pytest.mark.parametrize("path", RUN_HERE, ids=[str(p.relative_to(ROOT)) for p in RUN_HERE])
def test_code_blocks_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = code_blocks(path.read_text())
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    with fresh_store(tmp_path, monkeypatch):
        for position, block in enumerate(blocks):
            if not runnable(block):
                continue
            if block.code.lstrip().startswith(">>>"):
                run_doctest(block, namespace, path)
                continue
            printed = run_script(block, namespace, path)
            following = blocks[position + 1] if position + 1 < len(blocks) else None
            if following is not None and following.after_output_label:
                where = f"{path.relative_to(ROOT)}:{block.line}"
                assert normalized(printed) == normalized(following.code), (
                    f"output of the block at {where} differs from its Output: block"
                )


def test_code_block_parser() -> None:
    text = "\n".join(
        [
            "Intro.",
            "",
            "```python",
            "x = 1",
            "```",
            "",
            "<!-- not-run -->",
            "```py title='a.py'",
            "boom()",
            "```",
            "",
            "Output:",
            "",
            "```text",
            "1",
            "```",
            "",
            "- item",
            "",
            "    ```python",
            "    y = 2",
            "    ```",
            "",
            "```python",
            '--8<-- "examples/two_bots.py"',
            "```",
        ]
    )
    blocks = code_blocks(text)
    assert [(b.language, b.code, b.line) for b in blocks] == [
        ("python", "x = 1\n", 4),
        ("py", "boom()\n", 9),
        ("text", "1\n", 15),
        ("python", "y = 2\n", 21),
        ("python", '--8<-- "examples/two_bots.py"\n', 25),
    ]
    assert [b.not_run for b in blocks] == [False, True, False, False, False]
    assert [b.after_output_label for b in blocks] == [False, False, True, False, False]
    assert [runnable(b) for b in blocks] == [True, False, False, True, False]


# -- the document page -------------------------------------------------------------------


def shape(value: Any) -> Any:
    """The keys of ``value`` at every depth, and the type of each leaf."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value[:1]]
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def test_document_page_matches_a_stored_document() -> None:
    """The annotated document on the concepts page has the shape the library stores."""
    page = (DOCS / "concepts" / "document.md").read_text()
    block = next(b for b in code_blocks(page) if b.language == "js")
    shown = json.loads(re.sub(r"\s*// \(\d+\)!?", "", block.code))

    # The code block before it on the page, run on a store of its own.
    code = next(b for b in code_blocks(page) if b.language == "python").code
    threadmem_mongo.configure(uri="mongomock://")
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    thread = namespace["thread"]
    store = thread.store
    stored = store.collection.find_one({"_id": thread.id})
    assert stored is not None
    assert list(shown) == list(stored)
    assert shape(shown) == shape(stored)
    assert [list(m) for m in shown["messages"]] == [list(m) for m in stored["messages"]]


# -- the examples ------------------------------------------------------------------------


def load_example(name: str) -> ModuleType:
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docs_example_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def mongomock_store() -> ThreadStore:
    return ThreadStore(mongomock.MongoClient()["docs"]["threads"])


# The tables of the original threadmem (threadmem/db/models.py), as SQLAlchemy creates
# them in SQLite.
THREADMEM_SCHEMA = """
CREATE TABLE role_threads (
    id VARCHAR NOT NULL,
    owner_id VARCHAR,
    public BOOLEAN,
    name VARCHAR,
    role_mapping VARCHAR,
    meta_data VARCHAR,
    remote VARCHAR,
    version VARCHAR,
    created FLOAT,
    updated FLOAT,
    PRIMARY KEY (id)
);
CREATE TABLE role_messages (
    id VARCHAR NOT NULL,
    role VARCHAR NOT NULL,
    text VARCHAR NOT NULL,
    images VARCHAR,
    private BOOLEAN NOT NULL,
    created FLOAT,
    meta_data VARCHAR,
    thread_id VARCHAR,
    PRIMARY KEY (id),
    FOREIGN KEY(thread_id) REFERENCES role_threads (id)
);
"""

CAT_URL = "https://upload.wikimedia.org/wikipedia/commons/c/c7/Tabby_cat_with_blue_eyes-3336579.jpg"
ROLE = {
    "name": "assistant",
    "user_id": "bot-1",
    "user_name": "Bot",
    "icon": "",
    "description": None,
}


def threadmem_database(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path)
    connection.executescript(THREADMEM_SCHEMA)
    connection.executemany(
        "INSERT INTO role_threads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ("t-1", "random123", 1, "My thread", json.dumps({"assistant": ROLE}),
             json.dumps({"purpose": "demo"}), None, "3f2a" * 16, 100.0, 130.0),
            ("t-2", None, 0, None, None, None, None, None, 200.0, 200.0),
            ("t-3", "u2", 0, "broken", "{}", None, None, None, 300.0, 300.0),
            ("t-4", "u2", 0, "huge", None, None, None, None, 400.0, 400.0),
        ],
    )  # fmt: skip
    connection.executemany(
        "INSERT INTO role_messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            # inserted out of order: threadmem orders a thread's messages by created
            ("m-3", "user", "What do you see?", json.dumps([CAT_URL]), 0, 120.0, None, "t-1"),
            ("m-1", "user", "Hey there!", "[]", 0, 100.5, None, "t-1"),
            ("m-2", "assistant", "Hello!", None, 1, 110.0, json.dumps({"model": "x"}), "t-1"),
            ("m-9", "user", "orphan", None, 0, 90.0, None, None),
            ("m-4", "user", "", "[]", 0, 301.0, None, "t-3"),  # empty text: refused here
            ("m-5", "user", "x" * 17_000_000, None, 0, 401.0, None, "t-4"),  # over 16 MB
        ],
    )  # fmt: skip
    connection.commit()
    return connection


def test_migration_example(tmp_path: Path, mongomock_store: ThreadStore) -> None:
    migration = load_example("migrate_from_threadmem")
    connection = threadmem_database(tmp_path / "threads.db")
    try:
        report = migration.migrate(connection, store=mongomock_store)
        again = migration.migrate(connection, store=mongomock_store)
    finally:
        connection.close()

    assert report.migrated == ["t-1", "t-2"]
    assert report.skipped == []
    assert list(report.failed) == ["t-3", "t-4"]
    assert report.failed["t-3"].startswith("InvalidInputError: ")
    assert "empty" in report.failed["t-3"]
    assert report.failed["t-4"].startswith("ThreadTooLargeError: ")
    assert again.migrated == []
    assert again.skipped == ["t-1", "t-2"]

    thread = RoleThread.get("t-1", store=mongomock_store)
    assert (thread.owner_id, thread.public, thread.name) == ("random123", True, "My thread")
    assert thread.metadata == {"purpose": "demo"}
    assert (thread.created, thread.updated, thread.version) == (100.0, 130.0, 0)
    assert thread.role_mapping == {"assistant": V1Role(**ROLE)}
    messages = thread.messages()
    assert [m.id for m in messages] == ["m-1", "m-2", "m-3"]
    assert [m.private for m in messages] == [False, True, False]
    assert messages[1].metadata == {"model": "x"}
    assert messages[2].images == [CAT_URL]
    assert all(m.thread_id == "t-1" for m in messages)
    assert thread.to_openai()["messages"][2]["content"][1]["image_url"]["url"] == CAT_URL

    empty = RoleThread.get("t-2", store=mongomock_store)
    assert (empty.owner_id, empty.public, empty.messages()) == (None, False, [])
    assert threadmem_mongo.RoleMessage.find(id="m-9", store=mongomock_store) == []


def test_two_bots_example(capsys: pytest.CaptureFixture[str]) -> None:
    two_bots = load_example("two_bots")
    threadmem_mongo.configure(uri="mongomock://")
    thread = two_bots.main()
    printed = capsys.readouterr().out

    thread.refresh()
    assert [m.role for m in thread.messages()] == ["user", "alice", "bob", "alice", "bob"]
    assert [m.text for m in thread.messages()[1:]] == ["1", "2", "3", "4"]
    page = (DOCS / "guides" / "two-bots.md").read_text()
    output = next(b for b in code_blocks(page) if b.after_output_label)
    assert normalized(printed) == normalized(output.code)


# Older Starlette test clients run on httpx, newer ones prefer httpx2 and warn on httpx.
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
def test_fastapi_example(mongomock_store: ThreadStore) -> None:
    from fastapi.testclient import TestClient

    app = load_example("fastapi_app").create_app(store=mongomock_store)
    alice = {"X-User-Id": "alice"}
    with TestClient(app) as client:
        created = client.post("/threads", json={"name": "Support"}, headers=alice)
        assert created.status_code == 201, created.text
        thread = created.json()
        assert (thread["owner_id"], thread["name"], thread["version"]) == ("alice", "Support", 0)
        url = f"/threads/{thread['id']}"

        posted = client.post(
            f"{url}/messages",
            json={"role": "user", "text": "What is this?", "images": [CAT_URL]},
            headers=alice,
        )
        assert posted.status_code == 201, posted.text
        assert posted.json()["images"] == [CAT_URL]
        reply = {"role": "assistant", "text": "A cat."}
        assert client.post(f"{url}/messages", json=reply, headers=alice).status_code == 201

        listed = client.get("/threads", headers=alice)
        assert [t["id"] for t in listed.json()] == [thread["id"]]
        assert client.get("/threads", headers={"X-User-Id": "bob"}).json() == []

        messages = client.get(f"{url}/messages", headers=alice).json()
        assert [m["text"] for m in messages] == ["What is this?", "A cat."]
        exported = client.get(f"{url}/openai", headers=alice).json()
        assert exported["messages"][1] == {"role": "assistant", "content": "A cat."}

        renamed = client.patch(url, json={"name": "Cats", "version": 2}, headers=alice)
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["version"] == 3
        stale = client.patch(url, json={"name": "Dogs", "version": 2}, headers=alice)
        assert stale.status_code == 409
        assert stale.json()["current_version"] == 3

        assert client.get(f"{url}/messages", headers={"X-User-Id": "bob"}).status_code == 404
        assert client.get("/threads/no-such-id/messages", headers=alice).status_code == 404
        assert (
            client.post(
                f"{url}/messages", json={"role": "user", "text": ""}, headers=alice
            ).status_code
            == 422
        )
        local_file = {"role": "user", "text": "x", "images": ["/etc/hostname"]}
        assert client.post(f"{url}/messages", json=local_file, headers=alice).status_code == 422
        bad_metadata = {"name": "x", "metadata": {"$where": "1"}}
        assert client.post("/threads", json=bad_metadata, headers=alice).status_code == 422
        assert client.get("/threads").status_code == 401


def test_the_invariants_table_names_tests_that_exist() -> None:
    """Each test the long-threads page says guards an invariant is in the suite."""
    page = (DOCS / "concepts" / "long-threads.md").read_text()
    named = re.findall(r"`(test_\w+\.py)::(test_\w+)`", page)
    assert len(named) >= 10
    for filename, test in named:
        source = (ROOT / "tests" / filename).read_text()
        assert re.search(rf"^(async )?def {test}\(", source, re.MULTILINE), (filename, test)
