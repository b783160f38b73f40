"""Every example in examples/ runs as a user runs it after the README's set-up.

Each runs in a new Python process with nothing configured, so it uses the embedded default
store: the suite's THREADMEM_HOME, whose server the first example starts and the session
stops at the end. The FastAPI app is served by uvicorn, queried over HTTP, then stopped.
"""

from __future__ import annotations

import json
import os
import pprint
import queue
import re
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from pymongo import MongoClient
from test_docs import THREADMEM_SCHEMA

from threadmem_mongo import RoleThread, ThreadStore, _embedded

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PYPROJECT = ROOT / "pyproject.toml"
CONFIG_VARS = ("THREADMEM_MONGODB_URI", "MONGODB_URI", "THREADMEM_DATABASE", "THREADMEM_TIMEOUT")
CHILD_TIMEOUT = 120.0
CAT_URL = "https://upload.wikimedia.org/wikipedia/commons/c/c7/Tabby_cat_with_blue_eyes-3336579.jpg"

pytestmark = pytest.mark.slow


@pytest.fixture
def user_env(_embedded_home: Path) -> dict[str, str]:
    """The environment of a user who followed the README: nothing configured."""
    env = {key: value for key, value in os.environ.items() if key not in CONFIG_VARS}
    env["THREADMEM_HOME"] = str(_embedded_home)
    return env


@pytest.fixture
def embedded_store(_embedded_home: Path) -> Iterator[ThreadStore]:
    """The default store the examples write to, read directly by the test."""
    info = _embedded.ensure_server(_embedded_home)
    client: MongoClient[dict[str, Any]] = MongoClient(info.uri, serverSelectionTimeoutMS=10_000)
    yield ThreadStore(client["threadmem"]["threads"])
    client.close()


def run_example(
    env: dict[str, str], name: str, *args: str, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )


def test_every_example_is_tested_here_and_names_the_extra_it_needs() -> None:
    source = Path(__file__).read_text()
    extras = set(re.findall(r"^([\w-]+) = \[", PYPROJECT.read_text(), re.MULTILINE))
    for example in sorted(EXAMPLES.glob("*.py")):
        run_here = f'"{example.name}"' in source or f'"examples.{example.stem}:' in source
        assert run_here, f"{example.name} is not run by {__name__}"
        first_line = example.read_text().split("\n", 1)[0]
        for extra in re.findall(r"needs the ``([\w-]+)`` extra", first_line):
            assert extra in extras, f"{example.name} names a missing extra: {extra}"


def test_quickstart_prints_the_thread_readably_and_a_second_process_finds_it(
    user_env: dict[str, str], embedded_store: ThreadStore
) -> None:
    result = run_example(user_env, "quickstart.py")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # One message per line, as pprint lays out a list.
    assert lines[0].startswith("[RoleMessage(role='user', text='Hey there!'")
    assert all(line.startswith(" RoleMessage(role=") for line in lines[1:4])
    assert lines[3].endswith(")]")
    expected = {
        "messages": [
            {"role": "user", "content": "Hey there!"},
            {"role": "assistant", "content": "Hello!"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What do you see on this picture?"},
                    {"type": "image_url", "image_url": {"url": CAT_URL}},
                ],
            },
            {"role": "assistant", "content": "I see a cat with blue eyes."},
        ]
    }
    openai_lines = pprint.pformat(expected, width=100, sort_dicts=False).splitlines()
    assert len(openai_lines) > 1
    assert lines[4 : 4 + len(openai_lines)] == openai_lines
    found = re.fullmatch(
        r"second process sees thread (\S+): 'My thread', 4 messages, version 4",
        lines[4 + len(openai_lines)],
    )
    assert found is not None, result.stdout
    assert lines[5 + len(openai_lines) :] == ["I see a cat with blue eyes."]
    stored = RoleThread.get(found.group(1), store=embedded_store)
    assert stored.to_openai() == expected


def test_two_bots_take_turns_on_the_default_store(
    user_env: dict[str, str], embedded_store: ThreadStore
) -> None:
    result = run_example(user_env, "two_bots.py")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "alice: 1",
        "bob: 2",
        "alice: 3",
        "bob: 4",
        "alice's view: 4 messages, version 4",
        "bob's view: 5 messages, version 5",
        "alice's view after refresh(): 5 messages, version 5",
    ]
    games = RoleThread.find(owner_id="demo", name="Counting game", store=embedded_store)
    assert [m.text for m in games[-1].messages()[1:]] == ["1", "2", "3", "4"]


def test_two_async_bots_answer_each_other_through_watch(
    user_env: dict[str, str], embedded_store: ThreadStore
) -> None:
    result = run_example(user_env, "two_bots_async.py")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:6] == [
        "A asks:    What is the capital of France?",
        "B answers: Paris.",
        "A asks:    How many legs does a spider have?",
        "B answers: Eight.",
        "A asks:    What is 6 times 7?",
        "B answers: 42.",
    ]
    assert lines[6:8] == ["", "Transcript (3 answers, version 7):"]
    assert lines[8:] == [
        "  system: Bot B answers the questions bot A asks.",
        "  user: What is the capital of France?",
        "  assistant: Paris.",
        "  user: How many legs does a spider have?",
        "  assistant: Eight.",
        "  user: What is 6 times 7?",
        "  assistant: 42.",
    ]


# -- the migration script ---------------------------------------------------------------


def threadmem_file(path: Path, thread_id: str) -> Path:
    """A database of the original threadmem holding one thread of two messages."""
    with sqlite3.connect(path) as connection:
        connection.executescript(THREADMEM_SCHEMA)
        connection.execute(
            "INSERT INTO role_threads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (thread_id, "random123", 1, "Old thread", None, None, None, None, 100.0, 110.0),
        )
        connection.executemany(
            "INSERT INTO role_messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (f"{thread_id}-1", "user", "Hey there!", "[]", 0, 100.5, None, thread_id),
                (f"{thread_id}-2", "assistant", "Hello!", None, 0, 101.0, None, thread_id),
            ],
        )
    connection.close()
    return path


def test_migration_copies_a_threadmem_database_and_leaves_it_untouched(
    user_env: dict[str, str], embedded_store: ThreadStore, tmp_path: Path
) -> None:
    thread_id = f"old-{uuid.uuid4().hex}"
    database = threadmem_file(tmp_path / "threads.db", thread_id)
    before = database.read_bytes()

    first = run_example(user_env, "migrate_from_threadmem.py", str(database))
    again = run_example(user_env, "migrate_from_threadmem.py", str(database))

    assert (first.returncode, first.stderr) == (0, ""), first.stderr
    assert first.stdout == "migrated 1, skipped 0, failed 0\n"
    assert (again.returncode, again.stdout) == (0, "migrated 0, skipped 1, failed 0\n")
    assert database.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["threads.db"]
    thread = RoleThread.get(thread_id, store=embedded_store)
    assert (thread.owner_id, thread.name, thread.created) == ("random123", "Old thread", 100.0)
    assert [(m.role, m.text) for m in thread.messages()] == [
        ("user", "Hey there!"),
        ("assistant", "Hello!"),
    ]


def not_threadmem(kind: str, folder: Path) -> Path:
    if kind == "missing":
        return folder / "mistyped" / "threads.db"
    if kind == "text file":
        path = folder / "notes.txt"
        path.write_text("not a database\n")
        return path
    if kind == "other SQLite database":
        path = folder / "other.db"
        with sqlite3.connect(path) as connection:
            connection.execute("CREATE TABLE role_threads (id TEXT)")
        connection.close()
        return path
    return folder


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("missing", "it cannot be opened"),
        ("text file", "it is not SQLite"),
        ("other SQLite database", "it has no role_messages table"),
        ("folder", "it cannot be opened"),
    ],
)
def test_migration_of_a_path_that_is_not_a_threadmem_database_is_one_error_line(
    user_env: dict[str, str], tmp_path: Path, kind: str, reason: str
) -> None:
    path = not_threadmem(kind, tmp_path)
    listing = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    contents = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    result = run_example(user_env, "migrate_from_threadmem.py", str(path), cwd=tmp_path)

    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    expected = f"migrate_from_threadmem.py: error: {path} is not a threadmem database: {reason}"
    assert lines[0].startswith(expected), lines[0]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == listing
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == contents


# -- the FastAPI app under uvicorn --------------------------------------------------------


def call(base: str, method: str, path: str, body: Any = None, user: str = "") -> tuple[int, Any]:
    request = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-User-Id": user},
    )
    try:
        with urllib.request.urlopen(request, timeout=CHILD_TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


@pytest.fixture
def served_app(user_env: dict[str, str]) -> Iterator[str]:
    """``uvicorn examples.fastapi_app:app`` as the example says, on a free port."""
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--port", "0"],
        cwd=ROOT,
        env=user_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    log: queue.Queue[str | None] = queue.Queue()

    def read_log(stream: IO[str]) -> None:
        for line in stream:
            log.put(line)
        log.put(None)  # the server closed its stderr: it exited

    reader = threading.Thread(target=read_log, args=(server.stderr,))
    reader.start()
    try:
        seen: list[str] = []
        while (line := log.get(timeout=CHILD_TIMEOUT)) is not None:
            seen.append(line)
            running = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if running is not None:
                yield running.group(1)
                break
        else:
            pytest.fail("uvicorn exited before serving:\n" + "".join(seen))
    finally:
        server.terminate()
        server.wait(timeout=CHILD_TIMEOUT)
        reader.join(timeout=CHILD_TIMEOUT)
        server.stderr.close()


def test_fastapi_app_serves_threads_under_uvicorn(
    served_app: str, embedded_store: ThreadStore
) -> None:
    user = f"user-{uuid.uuid4().hex}"

    status, created = call(served_app, "POST", "/threads", {"name": "Support"}, user)
    assert status == 201, created
    url = f"/threads/{created['id']}"
    status, posted = call(
        served_app, "POST", f"{url}/messages", {"role": "user", "text": "Hi"}, user
    )
    assert status == 201, posted
    status, listed = call(served_app, "GET", "/threads", user=user)
    assert (status, [t["id"] for t in listed]) == (200, [created["id"]])
    status, exported = call(served_app, "GET", f"{url}/openai", user=user)
    assert (status, exported) == (200, {"messages": [{"role": "user", "content": "Hi"}]})
    assert call(served_app, "GET", url, user="someone-else")[0] == 404
    assert call(served_app, "GET", "/threads")[0] == 401

    stored = RoleThread.get(created["id"], store=embedded_store)
    assert (stored.owner_id, stored.name, stored.version) == (user, "Support", 1)
