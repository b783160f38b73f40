"""The ``threadmem`` command: server management, listing, showing and exporting threads.

Most tests call ``threadmem_mongo._cli.main`` in this process against the session's
SecantusDB server (``--uri``); a few run the installed console script.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

import threadmem_mongo
from threadmem_mongo import RoleThread, ThreadStore, _cli, _config, _embedded
from threadmem_mongo._cli import main

REPO = Path(threadmem_mongo.__file__).resolve().parents[1]
ENV_VARS = ("THREADMEM_MONGODB_URI", "MONGODB_URI", "THREADMEM_DATABASE", "THREADMEM_TIMEOUT")
HEADER = ["ID", "NAME", "OWNER", "MESSAGES", "UPDATED"]
DEAD_URI = "mongodb://127.0.0.1:1/?directConnection=true"
CHILD_TIMEOUT = 120.0
PICTURE_URL = "https://example.com/cat.jpg"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty THREADMEM_HOME; its server, if a test started one, is stopped after."""
    folder = tmp_path / "home"
    monkeypatch.setenv(_embedded.HOME_ENV, str(folder))
    try:
        yield folder
    finally:
        _config.reset()
        _embedded.stop_server(folder)


@pytest.fixture
def target(wire_uri: str, wire_store: ThreadStore) -> list[str]:
    """The arguments that point the command at the test's database on the wire server."""
    return ["--uri", wire_uri, "--database", wire_store.collection.database.name]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def table(out: str) -> list[list[str]]:
    """The rows of an ``ls`` listing, header first; columns are two or more spaces apart."""
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.strip()]


def assert_one_error_line(err: str, *fragments: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("threadmem: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def four_threads(store: ThreadStore) -> list[RoleThread]:
    """Create four threads, oldest first: alice twice, bob, carol."""
    made = []
    for owner, name, posts in [("alice", "first", 1), ("bob", "second", 0), ("alice", "third", 3)]:
        thread = RoleThread(owner_id=owner, name=name, store=store)
        for i in range(posts):
            thread.post("user", f"{name} {i}")
        made.append(thread)
    made.append(RoleThread(owner_id="carol", name="fourth", store=store))
    return made


# -- ls -------------------------------------------------------------------------------------------


def test_ls_prints_a_table_of_threads_newest_first(
    capsys: pytest.CaptureFixture[str], target: list[str], wire_store: ThreadStore
) -> None:
    made = four_threads(wire_store)

    code, out, err = run(capsys, *target, "ls")

    assert (code, err) == (0, "")
    rows = table(out)
    assert rows[0] == HEADER
    expected = [[t.id, t.name, t.owner_id, str(t.message_count)] for t in reversed(made)]
    assert [row[:4] for row in rows[1:]] == expected
    for row in rows[1:]:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row[4]), row


def test_ls_owner_shows_only_that_owners_threads(
    capsys: pytest.CaptureFixture[str], target: list[str], wire_store: ThreadStore
) -> None:
    made = four_threads(wire_store)

    code, out, _ = run(capsys, *target, "ls", "--owner", "alice")

    assert code == 0
    assert [row[0] for row in table(out)[1:]] == [made[2].id, made[0].id]


def test_ls_limit_shows_that_many_newest_threads(
    capsys: pytest.CaptureFixture[str], target: list[str], wire_store: ThreadStore
) -> None:
    made = four_threads(wire_store)

    code, out, _ = run(capsys, *target, "ls", "--limit", "2")

    assert code == 0
    assert [row[0] for row in table(out)[1:]] == [made[3].id, made[2].id]


def test_ls_of_an_empty_store_prints_only_the_header(
    capsys: pytest.CaptureFixture[str], target: list[str]
) -> None:
    code, out, _ = run(capsys, *target, "ls")

    assert code == 0
    assert table(out) == [HEADER]


# -- show and export ------------------------------------------------------------------------------


def test_show_prints_the_thread_and_each_message_readably(
    capsys: pytest.CaptureFixture[str], target: list[str], wire_store: ThreadStore
) -> None:
    picture = (
        "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 200).decode()
    )
    thread = RoleThread(owner_id="alice", name="Shown", store=wire_store)
    thread.post("user", "Look at these", images=[PICTURE_URL, picture])
    thread.post("assistant", "A cat.")
    thread.post("assistant", "(thinking)", private=True)

    code, out, err = run(capsys, *target, "show", thread.id)

    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"Shown  id={thread.id}  owner=alice  version=3"
    stamp = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]"
    body = [line for line in lines[1:] if line]
    assert re.fullmatch(stamp + " user:", body[0])
    assert body[1] == "  Look at these"
    assert body[2] == f"  image: {PICTURE_URL}"
    assert body[3] == f"  image: {picture[:60]}... ({len(picture)} chars)"
    assert re.fullmatch(stamp + " assistant:", body[4])
    assert body[5] == "  A cat."
    assert re.fullmatch(stamp + r" assistant \(private\):", body[6])
    assert body[7] == "  (thinking)"
    assert len(body) == 8


def test_export_openai_prints_the_json_of_to_openai(
    capsys: pytest.CaptureFixture[str], target: list[str], wire_store: ThreadStore
) -> None:
    thread = RoleThread(name="Exported", store=wire_store)
    thread.post("user", "What is on <image> this picture?", images=[PICTURE_URL])
    thread.post("assistant", "Café ☕ — a cat.")

    code, out, err = run(capsys, *target, "export", thread.id, "--format", "openai")

    assert (code, err) == (0, "")
    assert json.loads(out) == thread.to_openai()
    assert "Café ☕" in out  # readable, not \\u-escaped


def test_export_openai_is_the_default_format(
    capsys: pytest.CaptureFixture[str], target: list[str], wire_store: ThreadStore
) -> None:
    thread = RoleThread(store=wire_store)
    thread.post("user", "hi")

    code, out, _ = run(capsys, *target, "export", thread.id)

    assert code == 0
    assert json.loads(out) == thread.to_openai()


def test_export_v1_prints_the_v1_schema(
    capsys: pytest.CaptureFixture[str], target: list[str], wire_store: ThreadStore
) -> None:
    thread = RoleThread(owner_id="alice", name="V1", metadata={"k": 1}, store=wire_store)
    thread.post("user", "hi")

    code, out, _ = run(capsys, *target, "export", thread.id, "--format", "v1")

    assert code == 0
    printed = json.loads(out)
    expected = json.loads(json.dumps(thread.to_v1().model_dump()))
    assert printed["version"] == 1  # a number, not the schema's "1"
    assert {**printed, "version": "1"} == expected


def test_demo_creates_the_quickstart_thread(
    capsys: pytest.CaptureFixture[str], target: list[str], wire_store: ThreadStore
) -> None:
    code, out, _ = run(capsys, *target, "demo")

    assert code == 0
    found = re.search(r"^created thread (\S+) \(version 4\)$", out, re.MULTILINE)
    assert found is not None, out
    thread = RoleThread.get(found.group(1), store=wire_store)
    assert (thread.name, thread.owner_id, thread.message_count) == ("My thread", "random123", 4)
    assert [m.role for m in thread.messages()] == ["user", "assistant", "user", "assistant"]
    # The OpenAI messages print in the order the API documents, role first.
    assert "{'role': 'user', 'content': 'Hey there!'}" in out
    assert "'content': 'Hey there!', 'role'" not in out


# -- stored text cannot steer the terminal --------------------------------------------------------

# An OSC retitle, a bell, clear-screen, a carriage return, a C1 CSI, DEL, a right-to-left
# override and a Unicode line separator. RAW_CONTROL finds any of them printed raw (tabs
# and line breaks are layout, and are allowed).
STEERING = "\x1b]0;owned\x07\x1b[2J\r\x9b31m\x7f\u202egnp.exe\u2028"
STEERING_ESCAPED = "\\x1b]0;owned\\x07\\x1b[2J\\r\\x9b31m\\x7f\\u202egnp.exe\\u2028"
RAW_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]"
)


def hostile_thread(store: ThreadStore) -> RoleThread:
    """A thread whose every stored string carries STEERING, written past any input checks."""
    thread = RoleThread(owner_id="eve" + STEERING, name="thread" + STEERING, store=store)
    thread.post("user", "line one\n[2026-01-01 00:00:00] assistant:\n\tindented" + STEERING)
    # Another client may store what this library would refuse: write the rest directly.
    store.collection.update_one(
        {"_id": thread.id},
        {
            "$set": {
                "messages.0.role": "user" + STEERING,
                "messages.0.images": ["https://example.com/cat.jpg?" + STEERING],
            }
        },
    )
    return thread


def test_show_escapes_control_characters_of_every_stored_string(
    capsys: pytest.CaptureFixture[str], store: ThreadStore
) -> None:
    thread = hostile_thread(store)

    code, out, err = run(capsys, "show", thread.id)

    assert (code, err) == (0, "")
    assert RAW_CONTROL.search(out) is None, repr(out)
    lines = out.splitlines()
    assert lines[0] == (
        f"thread{STEERING_ESCAPED}  id={thread.id}  owner=eve{STEERING_ESCAPED}  version=1"
    )
    body = [line for line in lines[1:] if line]
    assert re.fullmatch(r"\[[^]]+\] user" + re.escape(STEERING_ESCAPED) + ":", body[0])
    # Line breaks and tabs of the text are kept, indented under their message.
    assert body[1:4] == [
        "  line one",
        "  [2026-01-01 00:00:00] assistant:",
        f"  \tindented{STEERING_ESCAPED}",
    ]
    assert body[4] == f"  image: https://example.com/cat.jpg?{STEERING_ESCAPED}"
    assert len(body) == 5


def test_ls_escapes_control_characters_and_keeps_one_line_per_thread(
    capsys: pytest.CaptureFixture[str], store: ThreadStore
) -> None:
    thread = hostile_thread(store)
    RoleThread(owner_id="bob", name="two\nlines", store=store)

    code, out, err = run(capsys, "ls")

    assert (code, err) == (0, "")
    assert RAW_CONTROL.search(out) is None, repr(out)
    rows = table(out)
    assert len(rows) == 3
    assert rows[1][1:3] == ["two\\nlines", "bob"]
    assert rows[2][:3] == [thread.id, f"thread{STEERING_ESCAPED}", f"eve{STEERING_ESCAPED}"]


@pytest.mark.parametrize("form", ["openai", "v1"])
def test_export_escapes_every_control_character_and_decodes_to_the_stored_text(
    capsys: pytest.CaptureFixture[str], store: ThreadStore, form: str
) -> None:
    thread = hostile_thread(store)
    stored = RoleThread.get(thread.id, store=store)

    code, out, err = run(capsys, "export", thread.id, "--format", form)

    assert (code, err) == (0, "")
    assert RAW_CONTROL.search(out) is None, repr(out)
    assert "\\u009b" in out
    assert "\\u202e" in out
    printed = json.loads(out)
    if form == "openai":
        assert printed == stored.to_openai()
    else:
        assert printed["owner_id"] == "eve" + STEERING
        assert printed["messages"][0]["text"].endswith(STEERING)


def test_an_error_naming_stored_or_typed_text_stays_one_escaped_line(
    capsys: pytest.CaptureFixture[str], store: ThreadStore
) -> None:
    code, out, err = run(capsys, "show", "no-such\n" + STEERING)

    assert (code, out) == (1, "")
    assert_one_error_line(err, "no-such\\n" + STEERING_ESCAPED)
    assert RAW_CONTROL.search(err) is None


# -- errors and usage -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["show", "export"])
def test_unknown_thread_id_is_one_error_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], target: list[str], command: str
) -> None:
    code, out, err = run(capsys, *target, command, "no-such-thread")

    assert code == 1
    assert out == ""
    assert_one_error_line(err, "no-such-thread")


@pytest.mark.parametrize("limit", ["0", "-1", str(2**63)])
def test_limit_out_of_range_is_bad_usage_refused_before_connecting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, limit: str
) -> None:
    def connect() -> None:
        pytest.fail("the command connected before checking --limit")

    monkeypatch.setattr(_config, "default_store", connect)

    with pytest.raises(SystemExit) as info:
        main(["--uri", DEAD_URI, "ls", "--limit", limit])

    out, err = capsys.readouterr()
    assert info.value.code == 2
    assert out == ""
    assert err.startswith("usage: threadmem")
    assert f"argument --limit: must be between 1 and {2**63 - 1}, got {limit}" in err


def test_unreachable_server_is_one_error_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THREADMEM_TIMEOUT", "0.1")

    code, _, err = run(capsys, "--uri", DEAD_URI, "ls")

    assert code == 1
    assert_one_error_line(err, "MongoDB did not answer", "THREADMEM_TIMEOUT", "configure(timeout=")
    assert "post" not in err  # a listing posted nothing: no advice about retrying one


def test_a_server_that_does_not_answer_at_once_is_named_on_stderr_before_the_wait(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THREADMEM_TIMEOUT", "0.3")
    monkeypatch.setattr(_cli, "QUIET_WAIT", 0.1)

    code, out, err = run(capsys, "--uri", DEAD_URI, "ls")

    assert (code, out) == (1, "")
    notice, error = err.splitlines()
    assert notice == (
        "threadmem: waiting up to 0.3 s for MongoDB at 127.0.0.1:1 "
        "(THREADMEM_TIMEOUT sets how long)"
    )
    assert_one_error_line(error, "MongoDB did not answer", "THREADMEM_TIMEOUT")


def test_invalid_uri_is_one_error_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--uri", "not-a-mongodb-uri", "ls")

    assert code == 1
    assert_one_error_line(err, "invalid MongoDB URI")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["ls", "--limit", "many"],
        ["server"],
        ["server", "restart"],
        ["show"],
        ["export", "some-id", "--format", "csv"],
    ],
    ids=[
        "no command",
        "unknown command",
        "non-numeric limit",
        "server without action",
        "unknown server action",
        "show without id",
        "unknown format",
    ],
)
def test_bad_usage_exits_2_with_usage_on_stderr(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)

    out, err = capsys.readouterr()
    assert info.value.code == 2
    assert out == ""
    assert err.startswith("usage: threadmem")


# -- the embedded server --------------------------------------------------------------------------


@pytest.mark.slow
def test_server_start_status_stop_report_the_server_and_exit_codes(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    code, out, _ = run(capsys, "server", "status")
    assert code == 1
    assert out == f"not running (data folder {home})\n"

    code, out, err = run(capsys, "server", "start")
    assert code == 0
    assert err == f"threadmem: starting the embedded store in {home} (up to 30 s)\n"
    info = _embedded.server_status(home)
    assert info is not None
    where = info.uri
    assert where.startswith(f"mongodb://127.0.0.1:{info.port}/")
    assert out.splitlines() == [f"running at {where}", f"pid     {info.pid}", f"data    {home}"]

    code, again, err = run(capsys, "server", "status")
    assert (code, again, err) == (0, out, "")
    code, started_twice, err = run(capsys, "server", "start")
    assert (code, err) == (0, "")
    assert started_twice.splitlines() == [
        f"already running at {where}",
        f"pid     {info.pid}",
        f"data    {home}",
    ]

    code, out, _ = run(capsys, "server", "stop")
    assert (code, out) == (0, f"stopped server pid {info.pid}\n")
    assert _embedded.server_status(home) is None

    code, out, _ = run(capsys, "server", "status")
    assert code == 1
    code, out, _ = run(capsys, "server", "stop")
    assert (code, out) == (0, "no server was running\n")


@pytest.mark.slow
def test_a_command_that_starts_the_embedded_store_says_so_once_on_stderr(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    code, out, err = run(capsys, "ls")

    assert code == 0
    assert table(out) == [HEADER]
    assert err == (
        f"threadmem: starting the embedded store in {home} (up to 30 s); it keeps running "
        "after this command, until: threadmem server stop\n"
    )
    info = _embedded.server_status(home)
    assert info is not None

    _config.reset()  # as a new process would
    code, out, err = run(capsys, "demo")
    assert (code, err) == (0, "")
    assert out.startswith("created thread ")
    assert _embedded.server_status(home) == info

    code, out, err = run(capsys, "server", "start")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == f"already running at {info.uri}"


# -- the installed console script -----------------------------------------------------------------


def console_script() -> str:
    beside = Path(sys.executable).parent / "threadmem"
    found = str(beside) if beside.is_file() else shutil.which("threadmem")
    if found is None:
        pytest.fail("the threadmem console script is not installed: pip install -e '.[test]'")
    return found


def threadmem(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script(), *argv],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
        env=env,
    )


@pytest.mark.slow
def test_console_script_lists_shows_and_exports_from_the_uri(
    target: list[str], wire_store: ThreadStore
) -> None:
    thread = RoleThread(owner_id="alice", name="Scripted", store=wire_store)
    thread.post("user", "through the console script")

    listed = threadmem(*target, "ls")
    shown = threadmem(*target, "show", thread.id)
    exported = threadmem(*target, "export", thread.id, "--format", "openai")

    assert [listed.returncode, shown.returncode, exported.returncode] == [0, 0, 0]
    rows = table(listed.stdout)
    assert rows[0] == HEADER
    assert [row[:4] for row in rows[1:]] == [[thread.id, "Scripted", "alice", "1"]]
    assert "  through the console script" in shown.stdout.splitlines()
    assert json.loads(exported.stdout) == thread.to_openai()


@pytest.mark.slow
def test_console_script_errors_are_one_line_with_exit_1_and_bad_usage_exits_2(
    target: list[str], home: Path
) -> None:
    unknown = threadmem(*target, "show", "no-such-thread")
    not_running = threadmem("server", "status")
    usage = threadmem()

    assert unknown.returncode == 1
    assert_one_error_line(unknown.stderr, "no-such-thread")
    assert not_running.returncode == 1
    assert not_running.stdout == f"not running (data folder {home})\n"
    assert usage.returncode == 2
    assert usage.stderr.startswith("usage: threadmem")
    assert "Traceback" not in usage.stderr


@pytest.mark.slow
def test_without_embedded_extra_or_uri_the_command_says_how_to_fix_it(
    tmp_path: Path, home: Path
) -> None:
    # An interpreter outside this virtualenv, with the library importable but neither
    # secantusd-py beside it nor on PATH: what a user without the extra gets.
    interpreter = tmp_path / "bin" / "python"
    interpreter.parent.mkdir()
    interpreter.symlink_to(Path(sys.executable).resolve())
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ENV_VARS and key not in ("PYTHONHOME", "VIRTUAL_ENV")
    }
    env["PATH"] = str(interpreter.parent)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"]])

    result = subprocess.run(
        [str(interpreter), "-m", "threadmem_mongo._cli", "ls"],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
        env=env,
    )

    assert result.returncode == 1, result.stderr
    assert_one_error_line(
        result.stderr, "pip install 'threadmem-mongo[embedded]'", "THREADMEM_MONGODB_URI"
    )
    assert not (home / _embedded.STATE_FILE).exists()
