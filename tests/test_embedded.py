"""The embedded default store: a local SecantusDB server started on demand under
THREADMEM_HOME, shared by every process of the machine that uses the same folder.

Every test gets its own empty THREADMEM_HOME and stops whatever server ran there.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

import threadmem_mongo.aio as aio
from threadmem_mongo import ConfigurationError, RoleThread, _config, _embedded
from threadmem_mongo._cli import main
from threadmem_mongo._document import COLLECTION_NAME
from threadmem_mongo.aio import AsyncRoleThread

REPO = Path(__file__).resolve().parents[1]
ENV_VARS = ("THREADMEM_MONGODB_URI", "MONGODB_URI", "THREADMEM_DATABASE", "THREADMEM_TIMEOUT")
CHILD_TIMEOUT = 120.0
WAIT = 30.0

Document = dict[str, Any]


# -- processes, seen through /proc ----------------------------------------------------------------


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1]
    except (OSError, IndexError):
        return False
    return not state.startswith("Z")


def servers_of(folder: Path) -> list[int]:
    """The pids of the live secantusd-py processes serving ``folder``'s data."""
    data = str(folder / _embedded.DATA_DIR).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"secantusd" in arg for arg in argv) and data in argv and running(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def kill_leftovers(folder: Path) -> None:
    """Kill the servers a test left for ``folder`` (only ever ones this suite started)."""
    for pid in servers_of(folder):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + WAIT
    while servers_of(folder) and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_until_gone(pid: int) -> bool:
    deadline = time.monotonic() + WAIT
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not running(pid)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_state(folder: Path) -> Document:
    state: Document = json.loads((folder / _embedded.STATE_FILE).read_text())
    return state


def write_state(folder: Path, **fields: Any) -> None:
    state = {
        "host": "127.0.0.1",
        "port": free_port(),
        "pid": 0,
        "home": str(folder),
        "started": time.time(),
    }
    state.update(fields)
    (folder / _embedded.STATE_FILE).write_text(json.dumps(state))


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new Python process with this environment; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def dead_pid() -> int:
    """A pid that belonged to a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=CHILD_TIMEOUT)
    return process.pid


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty THREADMEM_HOME with no MongoDB configured; its server is stopped after."""
    folder = tmp_path / "home"
    monkeypatch.setenv(_embedded.HOME_ENV, str(folder))
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    try:
        yield folder
    finally:
        _config.reset()  # close the client before its server goes away
        _embedded.stop_server(folder)
        kill_leftovers(folder)


# -- on demand, and shared -----------------------------------------------------------------------


CHILD_READS_THREAD = """
import json, sys
from threadmem_mongo import RoleThread, _embedded
thread = RoleThread.get(sys.argv[1])
info = _embedded.server_status()
print(json.dumps({
    "name": thread.name,
    "texts": [m.text for m in thread.messages()],
    "version": thread.version,
    "pid": info.pid,
    "port": info.port,
}))
"""


@pytest.mark.slow
def test_first_thread_with_nothing_configured_starts_one_server_that_later_processes_reuse(
    home: Path,
) -> None:
    assert _embedded.server_status(home) is None

    thread = RoleThread(owner_id="me", name="kept")
    thread.post("user", "hello")
    thread.post("assistant", "hi")

    state = read_state(home)
    assert set(state) >= {"host", "port", "pid", "home", "started"}
    assert state["host"] == "127.0.0.1"
    assert state["home"] == str(home)
    assert servers_of(home) == [state["pid"]]
    # The thread is really in that server, in the default database.
    client: MongoClient[Document] = MongoClient(
        state["host"], state["port"], directConnection=True, serverSelectionTimeoutMS=5000
    )
    try:
        doc = client[_config.DEFAULT_DATABASE][COLLECTION_NAME].find_one({"_id": thread.id})
    finally:
        client.close()
    assert doc is not None
    assert [m["text"] for m in doc["messages"]] == ["hello", "hi"]
    assert any((home / _embedded.DATA_DIR).iterdir())

    for _later_process in range(2):
        seen = json.loads(run_python(CHILD_READS_THREAD, thread.id).stdout)
        assert seen == {
            "name": "kept",
            "texts": ["hello", "hi"],
            "version": 2,
            "pid": state["pid"],
            "port": state["port"],
        }
    assert read_state(home) == state
    assert servers_of(home) == [state["pid"]]


CHILD_STARTS_TOGETHER = """
import json, sys, time
from pathlib import Path
from threadmem_mongo import RoleThread, _embedded
ready, go, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
ready.touch()
while not go.exists():
    time.sleep(0.005)
thread = RoleThread(name=name)
print(json.dumps({"id": thread.id, "pid": _embedded.server_status().pid}))
"""


@pytest.mark.slow
def test_processes_starting_together_on_an_empty_home_end_up_on_one_server(
    home: Path, tmp_path: Path
) -> None:
    count = 4
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(count)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD_STARTS_TOGETHER, str(ready[i]), str(go), f"p{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    try:
        deadline = time.monotonic() + CHILD_TIMEOUT
        while not all(path.exists() for path in ready) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()  # all of them have imported the library: release them at once
        outputs = [child.communicate(timeout=CHILD_TIMEOUT) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert [child.returncode for child in children] == [0] * count, [err for _, err in outputs]
    reports = [json.loads(out) for out, _ in outputs]

    state = read_state(home)
    assert {report["pid"] for report in reports} == {state["pid"]}
    assert servers_of(home) == [state["pid"]]
    found = RoleThread.find(last=0)
    assert sorted(t.name or "" for t in found) == [f"p{i}" for i in range(count)]
    assert {t.id for t in found} == {report["id"] for report in reports}


@pytest.fixture
def unrelated_program() -> Iterator[int]:
    """A live process that is no SecantusDB server, waiting for its stdin to close."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        yield process.pid
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=CHILD_TIMEOUT)


@pytest.mark.slow
@pytest.mark.parametrize("stale", ["dead pid", "pid reused by another program"])
def test_stale_state_file_is_replaced_by_a_live_server(
    home: Path, stale: str, request: pytest.FixtureRequest
) -> None:
    home.mkdir()
    other = None
    if stale == "dead pid":
        write_state(home, pid=dead_pid())
    else:
        other = request.getfixturevalue("unrelated_program")
        write_state(home, pid=other)
    assert _embedded.server_status(home) is None

    thread = RoleThread(name="after a stale state file")
    thread.post("user", "stored")

    state = read_state(home)
    assert servers_of(home) == [state["pid"]]
    assert _embedded.server_status(home) == _embedded.ServerInfo(**state)
    assert [m.text for m in RoleThread.get(thread.id).messages()] == ["stored"]
    if other is not None:
        _config.reset()
        _embedded.stop_server(home)
        assert running(other), "stopping the store killed a process that was not its server"


@pytest.mark.slow
def test_state_file_with_a_wrong_port_for_the_live_server_ends_on_one_live_server(
    home: Path,
) -> None:
    # The recorded server is alive but the file names a port nobody answers on (edited,
    # or left from an earlier start): the store must end up on one working server, not
    # start a second server on the same data folder next to the first.
    first = _embedded.ensure_server(home)
    write_state(home, pid=first.pid, port=free_port(), started=first.started)

    thread = RoleThread(name="after a wrong port")

    state = read_state(home)
    assert servers_of(home) == [state["pid"]]
    assert RoleThread.get(thread.id).name == "after a wrong port"


def test_without_server_executable_or_uri_the_error_names_both_fixes(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_embedded, "find_executable", lambda: None)

    with pytest.raises(ConfigurationError) as info:
        RoleThread()
    with pytest.raises(ConfigurationError) as async_info:
        _config.async_default_store()

    for message in (str(info.value), str(async_info.value)):
        assert "pip install 'threadmem-mongo[embedded]'" in message
        assert "THREADMEM_MONGODB_URI" in message
    assert not (home / _embedded.STATE_FILE).exists()
    assert servers_of(home) == []


@pytest.mark.slow
def test_stop_server_stops_the_process_and_status_reports_none_after(home: Path) -> None:
    started = _embedded.ensure_server(home)
    assert _embedded.server_status(home) == started

    stopped = _embedded.stop_server(home)

    assert stopped == started
    assert not running(started.pid)
    assert servers_of(home) == []
    assert _embedded.server_status(home) is None
    assert not (home / _embedded.STATE_FILE).exists()
    assert _embedded.stop_server(home) is None


@pytest.mark.slow
def test_starting_the_server_in_process_leaves_no_resource_warning(home: Path) -> None:
    # An app that runs with warnings on (python -X dev, pytest) must not be told that a
    # subprocess it never saw "is still running": the server is meant to outlive the
    # Popen object that started it.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _embedded.ensure_server(home)
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


@pytest.mark.slow
def test_quickstart_example_on_a_fresh_home_prints_the_second_process_line(
    home: Path, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    found = re.search(
        r"^second process sees thread (\S+): 'My thread', 4 messages, version 4$",
        result.stdout,
        re.MULTILINE,
    )
    assert found is not None, result.stdout
    assert result.stdout.rstrip().endswith("I see a cat with blue eyes.")
    # The README: the server stays up for the next process.
    state = read_state(home)
    assert servers_of(home) == [state["pid"]]
    assert RoleThread.get(found.group(1)).message_count == 4


# -- one home, however it is spelled --------------------------------------------------------------


@pytest.mark.slow
def test_a_relative_home_starts_and_is_recorded_as_its_absolute_path(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home.mkdir()
    monkeypatch.chdir(home.parent)
    monkeypatch.setenv(_embedded.HOME_ENV, home.name)

    thread = RoleThread(name="relative")
    thread.post("user", "stored")

    state = read_state(home)
    assert state["home"] == str(home.resolve())
    assert servers_of(home) == [state["pid"]]
    assert [m.text for m in RoleThread.get(thread.id).messages()] == ["stored"]


@pytest.mark.slow
def test_a_home_through_a_symlink_and_its_real_path_is_one_store(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home.mkdir()
    link = tmp_path / "link-to-home"
    link.symlink_to(home, target_is_directory=True)
    monkeypatch.setenv(_embedded.HOME_ENV, str(link))
    thread = RoleThread(name="through the link")
    through_link = _embedded.server_status()
    assert through_link is not None

    _config.reset()
    monkeypatch.setenv(_embedded.HOME_ENV, str(home))
    assert RoleThread.get(thread.id).name == "through the link"
    assert _embedded.server_status() == through_link
    assert servers_of(home) == [through_link.pid]


@pytest.mark.slow
@pytest.mark.parametrize("spelling", ["symlink", "relative", "real"])
def test_server_stop_through_any_spelling_of_the_home_stops_the_server(
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    spelling: str,
) -> None:
    started = _embedded.ensure_server(home)
    link = tmp_path / "link-to-home"
    link.symlink_to(home, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    given = {"symlink": str(link), "relative": "link-to-home/../home", "real": str(home)}
    monkeypatch.setenv(_embedded.HOME_ENV, given[spelling])

    assert main(["server", "stop"]) == 0

    assert wait_until_gone(started.pid)
    assert servers_of(home) == []
    assert not (home / _embedded.STATE_FILE).exists()
    capsys.readouterr()


# -- an unusable home -----------------------------------------------------------------------------


def unusable_homes(tmp_path: Path) -> dict[str, Path]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    return {
        "a file": a_file,
        "below a file": a_file / "home",
        "a folder that cannot be made": Path("/proc/threadmem-home"),
    }


@pytest.mark.parametrize("kind", ["a file", "below a file", "a folder that cannot be made"])
def test_an_unusable_home_is_a_configuration_error_naming_it_in_both_apis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    folder = unusable_homes(tmp_path)[kind]
    monkeypatch.setenv(_embedded.HOME_ENV, str(folder))
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(ConfigurationError) as sync_error:
        RoleThread(name="nowhere")
    with pytest.raises(ConfigurationError) as async_error:
        _config.async_default_store()
    with pytest.raises(ConfigurationError) as direct_error:
        _embedded.ensure_server()

    for error in (sync_error, async_error, direct_error):
        assert str(folder) in str(error.value)
        assert _embedded.HOME_ENV in str(error.value)
    assert _embedded.server_status() is None
    assert _embedded.stop_server() is None


def test_a_home_the_process_may_not_write_is_a_configuration_error(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home.mkdir()
    # As root, permissions do not stop a write; a lock file that is a folder does.
    (home / _embedded.LOCK_FILE).mkdir()
    try:
        with pytest.raises(ConfigurationError, match=re.escape(str(home))):
            RoleThread(name="nowhere")
        with pytest.raises(ConfigurationError, match=re.escape(str(home))):
            _embedded.stop_server()
        assert servers_of(home) == []
    finally:
        (home / _embedded.LOCK_FILE).rmdir()


# -- a long-running process follows the server ----------------------------------------------------


async def close_async_api() -> None:
    """``aio.close()``, then collect the socket pymongo's async monitor may leave behind.

    When the client closes while its monitor is reconnecting to a server that was just
    killed or restarted, pymongo (4.20, ``pool_shared._async_create_connection``) closes
    the half-made socket only on ``OSError`` and ``TimeoutError``, not when the connect is
    cancelled; the garbage collector finds it later and warns, in whichever test runs
    then. Collecting here keeps that warning out of unrelated tests.
    """
    await aio.close()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "unclosed <socket", ResourceWarning)
        gc.collect()


CHILD_STOPS_SERVER = """
from threadmem_mongo import _cli
assert _cli.main(["server", "stop"]) == 0
"""

CHILD_STARTS_SERVER = """
from threadmem_mongo import _embedded
print(_embedded.ensure_server().port)
"""

CHILD_RESTARTS_SERVER = CHILD_STOPS_SERVER + CHILD_STARTS_SERVER


@pytest.mark.slow
def test_objects_of_a_long_running_process_reconnect_after_another_process_restarts_the_server(
    home: Path,
) -> None:
    thread = RoleThread(name="long-running")
    thread.post("user", "before the restart")
    before = read_state(home)

    restarted_port = int(run_python(CHILD_RESTARTS_SERVER).stdout.split()[-1])

    after = read_state(home)
    assert after["pid"] != before["pid"]
    assert restarted_port == before["port"]
    thread.post("user", "after the restart")  # the same object, its old connection
    assert [m.text for m in RoleThread.get(thread.id).messages()] == [
        "before the restart",
        "after the restart",
    ]


@pytest.mark.slow
@pytest.mark.asyncio
async def test_async_objects_reconnect_after_another_process_restarts_the_server(
    home: Path,
) -> None:
    try:
        thread = await AsyncRoleThread.create(name="long-running")
        await thread.post("user", "before the restart")
        before = read_state(home)

        run_python(CHILD_RESTARTS_SERVER)

        assert read_state(home)["pid"] != before["pid"]
        await thread.post("user", "after the restart")
        loaded = await AsyncRoleThread.get(thread.id)
        assert [m.text for m in await loaded.messages()] == [
            "before the restart",
            "after the restart",
        ]
    finally:
        await close_async_api()


@contextlib.contextmanager
def port_held(port: int) -> Iterator[None]:
    """Listen on ``port`` and never answer, as another program holding it would."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield


@pytest.mark.slow
def test_default_store_follows_a_server_restarted_on_a_new_port(home: Path) -> None:
    thread = RoleThread(name="long-running")
    thread.post("user", "before the restart")
    before = read_state(home)

    run_python(CHILD_STOPS_SERVER)
    with port_held(before["port"]):
        run_python(CHILD_STARTS_SERVER)
        after = read_state(home)
        assert after["port"] != before["port"]

        loaded = RoleThread.get(thread.id)
        loaded.post("user", "after the restart")
        assert [m.text for m in RoleThread.get(thread.id).messages()] == [
            "before the restart",
            "after the restart",
        ]
        # The old object's client was for the old address: it says to load it again.
        with pytest.raises(ConfigurationError, match="load them again"):
            thread.post("user", "through the old client")


@pytest.mark.slow
@pytest.mark.asyncio
async def test_async_default_store_follows_a_server_restarted_on_a_new_port(home: Path) -> None:
    try:
        thread = await AsyncRoleThread.create(name="long-running")
        await thread.post("user", "before the restart")
        before = read_state(home)

        run_python(CHILD_STOPS_SERVER)
        with port_held(before["port"]):
            run_python(CHILD_STARTS_SERVER)
            assert read_state(home)["port"] != before["port"]

            loaded = await AsyncRoleThread.get(thread.id)
            await loaded.post("user", "after the restart")
            again = await AsyncRoleThread.get(thread.id)
            assert [m.text for m in await again.messages()] == [
                "before the restart",
                "after the restart",
            ]
    finally:
        await close_async_api()


# -- durability -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_embedded_store_journals_every_write_in_both_apis(home: Path) -> None:
    sync_concern = _config.default_store().collection.write_concern
    async_concern = _config.async_default_store().collection.write_concern
    for concern in (sync_concern, async_concern):
        assert concern.document == {"w": 1, "j": True}
        assert concern.acknowledged


KILLED_AFTER = 300


def kill_server(home: Path) -> None:
    """SIGKILL the recorded server: no shutdown, no checkpoint, no flush."""
    pid = read_state(home)["pid"]
    os.kill(pid, signal.SIGKILL)
    assert wait_until_gone(pid)


@pytest.mark.slow
def test_no_acknowledged_post_is_lost_when_the_server_is_killed(home: Path) -> None:
    thread = RoleThread(name="durable")
    for number in range(KILLED_AFTER):
        thread.post("user", f"post {number}")

    kill_server(home)
    _embedded.ensure_server(home)

    texts = [m.text for m in RoleThread.get(thread.id).messages()]
    assert texts == [f"post {number}" for number in range(KILLED_AFTER)]


@pytest.mark.slow
@pytest.mark.asyncio
async def test_no_acknowledged_async_post_is_lost_when_the_server_is_killed(home: Path) -> None:
    try:
        thread = await AsyncRoleThread.create(name="durable")
        for number in range(KILLED_AFTER):
            await thread.post("user", f"post {number}")

        kill_server(home)
        _embedded.ensure_server(home)

        loaded = await AsyncRoleThread.get(thread.id)
        texts = [m.text for m in await loaded.messages()]
        assert texts == [f"post {number}" for number in range(KILLED_AFTER)]
    finally:
        await close_async_api()
