"""Read an OpenAI Assistants API thread export. Pure, apart from ``read_export_file``.

An export is what listing a thread's messages returned: the list object
(``{"object": "list", "data": [...]}``, newest first unless listed with
``order="asc"``), a JSON list of ``thread.message`` objects, or the same objects one per
line (NDJSON, as third-party exporters write them). ``parse_export`` turns it into the
messages of one thread, oldest first:

* ``text`` parts give the text (their annotations are kept in the message's metadata),
  ``refusal`` parts too;
* ``image_url`` parts become images, placed as in ``to_openai()``;
* ``image_file`` parts cannot become images (the export holds only a file id, not the
  bytes): the ids are kept in the message's metadata, and a message with nothing else
  gets the text ``[image_file <id>]`` for each;
* the message's id, ``thread_id``, ``assistant_id``, ``run_id``, ``attachments``,
  ``status`` and own ``metadata`` are kept in its metadata under ``"openai"``;
* ``created_at`` becomes the message's ``created``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from threadmem_mongo._images import Part
from threadmem_mongo._imports import (
    ImportedMessage,
    check_list,
    check_mapping,
    check_string,
    text_and_images,
)
from threadmem_mongo.errors import InvalidInputError

#: Suffixes of files read as one JSON value per line.
NDJSON_SUFFIXES = frozenset({".jsonl", ".ndjson"})

ExportSource = str | os.PathLike[str] | Mapping[str, Any] | list[Any]
"""What ``RoleThread.import_openai_thread`` takes: a path, or the parsed JSON."""

#: Fields of a ``thread.message`` kept in the imported message's metadata when set.
_KEPT_FIELDS = ("id", "thread_id", "assistant_id", "run_id", "status", "attachments")


@dataclass(frozen=True)
class AssistantsThread:
    """One thread read from an export.

    Attributes:
        thread_id: The Assistants API thread id (``thread_...``).
        messages: The messages, oldest first.
        complete: False when the export says more messages were left unlisted
            (``has_more`` true).
    """

    thread_id: str
    messages: list[ImportedMessage]
    complete: bool


def read_export_file(path: str | os.PathLike[str]) -> object:
    """Read a JSON file, or an NDJSON file (``.jsonl``, ``.ndjson``) as a list.

    The only function of this module that does I/O.

    Raises:
        InvalidInputError: The file cannot be read, or is not JSON (NDJSON).
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read {str(file)!r}: {exc}") from exc
    if file.suffix.lower() in NDJSON_SUFFIXES:
        return _parse_ndjson(text, str(file))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{str(file)!r} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc


def _parse_ndjson(text: str, name: str) -> list[Any]:
    values = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                f"{name!r} line {number} is not JSON: {exc.msg} at column {exc.colno}"
            ) from exc
    return values


def parse_export(data: object) -> AssistantsThread:
    """Return the thread in an Assistants API export (already parsed from JSON).

    Args:
        data: The list object, or a list of ``thread.message`` objects.

    Raises:
        InvalidInputError: The export is not of one of those shapes, holds no messages,
            holds messages of more than one thread, or a message is malformed.
    """
    complete = True
    newest_first_by_default = False
    if isinstance(data, Mapping):
        if data.get("object") != "list" or "data" not in data:
            raise InvalidInputError(
                "an Assistants export must be a list-messages object "
                '({"object": "list", "data": [...]}) or a list of thread.message objects'
            )
        raw_messages = check_list(data["data"], "the export's 'data'")
        complete = data.get("has_more") is not True
        newest_first_by_default = True
    else:
        raw_messages = check_list(data, "an Assistants export")
    if not raw_messages:
        raise InvalidInputError("the export holds no messages")
    read = [_read_message(raw, index) for index, raw in enumerate(raw_messages)]
    thread_ids = {thread_id for thread_id, _, _ in read}
    if len(thread_ids) != 1:
        raise InvalidInputError(
            f"the export holds messages of {len(thread_ids)} threads "
            f"({', '.join(sorted(thread_ids))}); import one thread per export"
        )
    times = [created for _, created, _ in read]
    if _newest_first(times, default=newest_first_by_default):
        read.reverse()
    # A stable sort: messages of the same second keep the order the export gave them.
    read.sort(key=lambda entry: entry[1])
    return AssistantsThread(
        thread_id=thread_ids.pop(), messages=[message for _, _, message in read], complete=complete
    )


def _newest_first(times: list[float], *, default: bool) -> bool:
    """Whether the export lists newest first: its first and last differing times say;
    when all are equal, the list object's default order (newest first) is assumed."""
    if times[0] != times[-1]:
        return times[0] > times[-1]
    return default


def _read_message(raw: object, index: int) -> tuple[str, float, ImportedMessage]:
    where = f"message {index}"
    message = check_mapping(raw, where)
    kind = message.get("object", "thread.message")
    if kind != "thread.message":
        raise InvalidInputError(f"{where} is a {kind!r} object, not a thread.message")
    message_id = check_string(message.get("id"), f"{where} 'id'")
    where = f"message {message_id!r}"
    thread_id = check_string(message.get("thread_id"), f"{where} 'thread_id'")
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise InvalidInputError(f"{where} 'role' must be 'user' or 'assistant', got {role!r}")
    created = message.get("created_at")
    if isinstance(created, bool) or not isinstance(created, (int, float)):
        raise InvalidInputError(f"{where} 'created_at' must be epoch seconds")
    parts: list[Part] = []
    annotations: list[Any] = []
    image_files: list[Any] = []
    content = check_list(message.get("content"), f"{where} 'content'")
    for number, raw_part in enumerate(content):
        part_where = f"{where} content[{number}]"
        part = check_mapping(raw_part, part_where)
        part_kind = part.get("type")
        if part_kind == "text":
            body = check_mapping(part.get("text"), f"{part_where} 'text'")
            parts.append(("text", check_string(body.get("value"), f"{part_where} text value")))
            annotations.extend(check_list(body.get("annotations", []), f"{part_where} annotations"))
        elif part_kind == "refusal":
            parts.append(("text", check_string(part.get("refusal"), f"{part_where} 'refusal'")))
        elif part_kind == "image_url":
            image = check_mapping(part.get("image_url"), f"{part_where} 'image_url'")
            parts.append(("image", check_string(image.get("url"), f"{part_where} image url")))
        elif part_kind == "image_file":
            image = check_mapping(part.get("image_file"), f"{part_where} 'image_file'")
            check_string(image.get("file_id"), f"{part_where} image file_id")
            image_files.append(dict(image))
        else:
            raise InvalidInputError(f"{part_where} has an unknown type {part_kind!r}")
    text, images = text_and_images(parts)
    if not text and not images:
        text = " ".join(f"[image_file {file['file_id']}]" for file in image_files)
    kept: dict[str, Any] = {
        field: message[field] for field in _KEPT_FIELDS if message.get(field) not in (None, [])
    }
    if annotations:
        kept["annotations"] = annotations
    if image_files:
        kept["image_files"] = image_files
    if message.get("metadata"):
        kept["metadata"] = check_mapping(message["metadata"], f"{where} 'metadata'")
    imported = ImportedMessage(
        role=role,
        text=text,
        images=tuple(images),
        created=float(created),
        metadata={"openai": kept},
    )
    return thread_id, float(created), imported


def export_data(source: object) -> object:
    """Return the export ``source`` holds: read from the file it names when it is a path
    (``str`` or ``os.PathLike``), else ``source`` itself (already parsed JSON)."""
    if isinstance(source, (str, os.PathLike)):
        return read_export_file(source)
    return source
