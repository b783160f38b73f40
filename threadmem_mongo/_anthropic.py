"""Conversion between messages and the Anthropic Messages API format. Pure: no I/O.

The Messages API knows two roles in ``messages``, ``user`` and ``assistant``, and takes
the system prompt apart, as ``system``. Exported:

* ``system`` messages are lifted, in order, into ``system`` (joined by a blank line);
* ``assistant`` messages stay ``assistant``;
* ``user`` messages, and those of every other role (a bot's name, ``tool``), become
  ``user`` turns; the text of another role is prefixed with ``"<role>: "``.

Content is always a list of blocks: ``text`` blocks and ``image`` blocks whose source is
``base64`` (from a data URI) or ``url``, placed by ``<image>`` placeholders as in
``to_openai()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from threadmem_mongo._images import Part
from threadmem_mongo._imports import (
    ImportedMessage,
    check_list,
    check_mapping,
    check_string,
    data_uri,
    data_uri_parts,
    message_parts,
    speaker_text,
    text_and_images,
)
from threadmem_mongo._models import RoleMessage
from threadmem_mongo.errors import InvalidInputError

#: The image types the Messages API accepts.
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

ROLES = ("user", "assistant")


def thread_to_anthropic(messages: Sequence[RoleMessage]) -> dict[str, Any]:
    """Return ``{"system": str | None, "messages": [...]}`` for ``messages``.

    Raises:
        InvalidInputError: A system message has images, an image is of a type the
            Messages API does not take, or placeholders do not match images.
    """
    system: list[str] = []
    exported: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            if message.images:
                raise InvalidInputError(
                    f"system message {message.id!r} has images; the Anthropic system "
                    "prompt is text only"
                )
            system.append(message.text)
            continue
        role = "assistant" if message.role == "assistant" else "user"
        parts = message_parts(message, speaker_text(message.role, message.text))
        exported.append({"role": role, "content": [_block(message.id, part) for part in parts]})
    return {"system": "\n\n".join(system) if system else None, "messages": exported}


def _block(message_id: str, part: Part) -> dict[str, Any]:
    kind, value = part
    if kind == "text":
        return {"type": "text", "text": value}
    if not value.startswith("data:"):
        return {"type": "image", "source": {"type": "url", "url": value}}
    media_type, payload = data_uri_parts(value)
    if media_type not in IMAGE_MEDIA_TYPES:
        raise InvalidInputError(
            f"message {message_id!r} has a {media_type} image; the Anthropic Messages API "
            f"takes only {', '.join(sorted(IMAGE_MEDIA_TYPES))}"
        )
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": payload},
    }


def messages_from_anthropic(messages: object, system: object = None) -> list[ImportedMessage]:
    """Return the messages of an Anthropic Messages API conversation.

    A ``system`` prompt (a string, or a list of ``text`` blocks) becomes one ``system``
    message first. Each message keeps its role; its ``text`` blocks and ``image`` blocks
    become text and images (see ``_imports.text_and_images``).

    Raises:
        InvalidInputError: The conversation is not of the Messages API shape, or holds
            blocks other than text and images.
    """
    parsed: list[ImportedMessage] = []
    system_text = _system_text(system)
    if system_text:
        parsed.append(ImportedMessage(role="system", text=system_text))
    for index, raw in enumerate(check_list(messages, "messages")):
        where = f"messages[{index}]"
        message = check_mapping(raw, where)
        role = message.get("role")
        if role not in ROLES:
            raise InvalidInputError(f"{where} 'role' must be 'user' or 'assistant', got {role!r}")
        content = message.get("content")
        if isinstance(content, str):
            parsed.append(ImportedMessage(role=role, text=content))
            continue
        parts = [
            _part(block, f"{where}.content[{n}]")
            for n, block in enumerate(check_list(content, f"{where} 'content'"))
        ]
        text, images = text_and_images(parts)
        parsed.append(ImportedMessage(role=role, text=text, images=tuple(images)))
    return parsed


def _system_text(system: object) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    texts = []
    for index, raw in enumerate(check_list(system, "system")):
        kind, text = _part(raw, f"system[{index}]")
        if kind != "text":
            raise InvalidInputError(f"system[{index}] must be a text block")
        texts.append(text)
    return "\n\n".join(texts)


def _part(raw: object, where: str) -> Part:
    block = check_mapping(raw, where)
    kind = block.get("type")
    if kind == "text":
        return "text", check_string(block.get("text"), f"{where} 'text'")
    if kind != "image":
        raise InvalidInputError(
            f"{where} is a {kind!r} block; only 'text' and 'image' blocks can be imported"
        )
    source: Mapping[str, Any] = check_mapping(block.get("source"), f"{where} 'source'")
    source_type = source.get("type")
    if source_type == "url":
        return "image", check_string(source.get("url"), f"{where} source 'url'")
    if source_type == "base64":
        media_type = check_string(source.get("media_type"), f"{where} source 'media_type'")
        data = check_string(source.get("data"), f"{where} source 'data'")
        return "image", data_uri(media_type, data)
    raise InvalidInputError(
        f"{where} has an image source of type {source_type!r}; only 'base64' and 'url' "
        "sources can be imported"
    )
