"""Conversion between messages and OpenAI Responses API input items. Pure: no I/O.

Each message becomes one ``message`` item:

* ``assistant`` messages: ``{"type": "message", "role": "assistant", "content": text}``,
  the string form the API takes for earlier assistant turns (an assistant message with
  images cannot be sent as input, and raises);
* ``user``, ``system`` and ``developer`` messages keep their role, with ``input_text``
  and ``input_image`` content parts placed by ``<image>`` placeholders as in
  ``to_openai()``;
* messages of every other role (a bot's name, ``tool``) become ``user`` items whose text
  is prefixed with ``"<role>: "``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from threadmem_mongo._images import Part
from threadmem_mongo._imports import (
    ImportedMessage,
    check_list,
    check_mapping,
    check_string,
    message_parts,
    speaker_text,
    text_and_images,
)
from threadmem_mongo._models import RoleMessage
from threadmem_mongo.errors import InvalidInputError

#: The roles a Responses API message item may have.
ROLES = ("user", "assistant", "system", "developer")


def thread_to_responses(messages: Sequence[RoleMessage]) -> list[dict[str, Any]]:
    """Return one Responses API input item per message.

    Raises:
        InvalidInputError: An assistant message has images, or placeholders do not
            match images.
    """
    items: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "assistant":
            if message.images:
                raise InvalidInputError(
                    f"assistant message {message.id!r} has images; the Responses API takes "
                    "no images in assistant input"
                )
            items.append({"type": "message", "role": "assistant", "content": message.text})
            continue
        if message.role in ROLES:
            role, text = message.role, message.text
        else:
            role, text = "user", speaker_text(message.role, message.text)
        content = [_input_part(part) for part in message_parts(message, text)]
        items.append({"type": "message", "role": role, "content": content})
    return items


def _input_part(part: Part) -> dict[str, Any]:
    kind, value = part
    if kind == "text":
        return {"type": "input_text", "text": value}
    return {"type": "input_image", "image_url": value, "detail": "auto"}


def messages_from_responses(items: object) -> list[ImportedMessage]:
    """Return the messages of a list of Responses API input items.

    Message items (with ``"type": "message"``, or no type) keep their role; string
    content becomes the text, and ``input_text``, ``output_text``, ``refusal`` and
    ``input_image`` parts become text and images (see ``_imports.text_and_images``).

    Raises:
        InvalidInputError: ``items`` is not a list of message items, an item is of
            another type (function calls, reasoning, ...), or an image is given by
            ``file_id`` (its bytes are not in the input).
    """
    parsed: list[ImportedMessage] = []
    for index, raw in enumerate(check_list(items, "items")):
        where = f"items[{index}]"
        item = check_mapping(raw, where)
        kind = item.get("type", "message")
        if kind != "message":
            raise InvalidInputError(
                f"{where} is a {kind!r} item; only 'message' items can be imported"
            )
        role = item.get("role")
        if role not in ROLES:
            raise InvalidInputError(
                f"{where} 'role' must be one of {', '.join(ROLES)}, got {role!r}"
            )
        content = item.get("content")
        if isinstance(content, str):
            parsed.append(ImportedMessage(role=role, text=content))
            continue
        parts = [
            _part(part, f"{where}.content[{n}]")
            for n, part in enumerate(check_list(content, f"{where} 'content'"))
        ]
        text, images = text_and_images(parts)
        parsed.append(ImportedMessage(role=role, text=text, images=tuple(images)))
    return parsed


def _part(raw: object, where: str) -> Part:
    part = check_mapping(raw, where)
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        return "text", check_string(part.get("text"), f"{where} 'text'")
    if kind == "refusal":
        return "text", check_string(part.get("refusal"), f"{where} 'refusal'")
    if kind == "input_image":
        url = part.get("image_url")
        if url is None:
            raise InvalidInputError(
                f"{where} names its image by file_id; only images given by URL or data URI "
                "can be imported"
            )
        return "image", check_string(url, f"{where} 'image_url'")
    raise InvalidInputError(
        f"{where} is a {kind!r} part; only input_text, output_text, refusal and "
        "input_image parts can be imported"
    )
