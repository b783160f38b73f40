"""``threadmem export --format anthropic|responses`` and ``threadmem import``.

``threadmem_mongo._cli.main`` runs in this process against the ``store`` fixture's
database (the configured default store), on mongomock and on the SecantusDB wire server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_formats import (
    LARGE_DATA_URI,
    SMALL_DATA_URI,
    URL,
    assistants_messages,
    blob_files,
    check_anthropic,
    check_chat,
    check_imported,
    check_responses,
    list_object,
    signature,
    thread_count,
)

from threadmem_mongo import RoleThread, ThreadStore
from threadmem_mongo._cli import main

CHECKS = {"anthropic": check_anthropic, "responses": check_responses, "openai": check_chat}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def exported_thread(store: ThreadStore) -> RoleThread:
    thread = RoleThread(owner_id="alice", store=store)
    thread.post("system", "You are terse.")
    thread.post("user", "Compare <image> with <image>", images=[URL, SMALL_DATA_URI])
    thread.post("user", "Describe this", images=[LARGE_DATA_URI])
    thread.post("assistant", "Both are cats.")
    return thread


def assert_one_error_line(err: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("threadmem: error: "), err


@pytest.mark.parametrize("form", ["anthropic", "responses", "openai"])
def test_export_prints_the_format_and_import_reads_it_back_once(
    capsys: pytest.CaptureFixture[str],
    store: ThreadStore,
    db_client: Any,
    tmp_path: Path,
    form: str,
) -> None:
    thread = exported_thread(store)

    code, out, err = run(capsys, "export", thread.id, "--format", form)
    assert (code, err) == (0, "")
    printed = json.loads(out)
    CHECKS[form](printed)
    path = tmp_path / "export.json"
    path.write_text(out)

    code, out, err = run(capsys, "import", str(path), "--format", form)
    assert (code, err) == (0, "")
    imported_id = out.strip()
    assert out == imported_id + "\n"
    imported = RoleThread.get(imported_id, store=store)
    assert signature(imported.messages()) == signature(thread.messages())
    assert imported.owner_id is None
    assert imported.version == 0

    # The same file again: the same thread, nothing new stored.
    threads, blobs = thread_count(store, db_client), blob_files(store, db_client)
    assert run(capsys, "import", str(path), "--format", form) == (0, out, "")
    assert (thread_count(store, db_client), blob_files(store, db_client)) == (threads, blobs)

    code, owned, _ = run(capsys, "import", str(path), "--format", form, "--owner", "bob")
    assert code == 0
    assert owned != out
    assert RoleThread.get(owned.strip(), store=store).owner_id == "bob"


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_import_assistants_export_prints_the_thread_id_and_is_idempotent(
    capsys: pytest.CaptureFixture[str],
    store: ThreadStore,
    db_client: Any,
    tmp_path: Path,
    suffix: str,
) -> None:
    path = tmp_path / f"thread{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(list_object(assistants_messages())))
    else:
        path.write_text("\n".join(json.dumps(m) for m in assistants_messages()))

    code, out, err = run(capsys, "import", str(path), "--format", "assistants", "--owner", "alice")
    assert (code, err) == (0, "")
    thread = RoleThread.get(out.strip(), store=store)
    check_imported(thread, thread.messages())
    assert thread.owner_id == "alice"

    assert run(capsys, "import", str(path), "--format", "assistants", "--owner", "alice") == (
        0,
        out,
        "",
    )
    assert thread_count(store, db_client) == 1


@pytest.mark.parametrize(
    ("form", "content"),
    [
        ("assistants", "{broken"),
        ("assistants", json.dumps({"object": "list", "data": []})),
        ("openai", json.dumps({"messages": [{"role": "user"}]})),
        ("openai", json.dumps([{"role": "user", "content": "hi"}])),
        ("anthropic", json.dumps({"system": None, "messages": [{"role": "tool", "content": "x"}]})),
        ("anthropic", json.dumps({"messages": [], "model": "claude"})),
        ("responses", json.dumps({"messages": []})),
        (
            "responses",
            json.dumps([{"type": "function_call_output", "call_id": "c", "output": "x"}]),
        ),
    ],
)
def test_import_of_a_malformed_file_is_one_error_line_and_stores_nothing(
    capsys: pytest.CaptureFixture[str],
    store: ThreadStore,
    db_client: Any,
    tmp_path: Path,
    form: str,
    content: str,
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)

    code, out, err = run(capsys, "import", str(path), "--format", form)

    assert (code, out) == (1, "")
    assert_one_error_line(err)
    assert thread_count(store, db_client) == 0


def test_import_of_a_missing_file_is_one_error_line(
    capsys: pytest.CaptureFixture[str], store: ThreadStore, tmp_path: Path
) -> None:
    code, out, err = run(capsys, "import", str(tmp_path / "nope.json"), "--format", "openai")
    assert (code, out) == (1, "")
    assert_one_error_line(err)
    assert "cannot read" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["import", "x.json", "--format", "csv"],
        ["import", "x.json"],
        ["import", "--format", "openai"],
        ["export", "some-id", "--format", "assistants"],
    ],
    ids=["unknown import format", "no format", "no file", "assistants is import only"],
)
def test_bad_format_usage_exits_2_with_one_error_line(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    assert info.value.code == 2
    assert out == ""
    assert err.startswith("usage: threadmem")
    assert len([line for line in err.splitlines() if "error:" in line]) == 1
    assert "Traceback" not in err
