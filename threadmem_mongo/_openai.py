"""Conversion between messages and the OpenAI chat-completions format. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from threadmem_mongo._images import IMAGE_PLACEHOLDER, placed_parts
from threadmem_mongo.errors import InvalidInputError


class ChatMessage(Protocol):
    """What the conversion reads from a message: ``RoleMessage`` is one."""

    @property
    def id(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def images(self) -> Sequence[str]: ...


def message_to_openai(message: ChatMessage) -> dict[str, Any]:
    """Return ``message`` as an OpenAI chat message; see ``RoleMessage.to_openai``."""
    if not message.images:
        return {"role": message.role, "content": message.text}
    content = [
        {"type": "text", "text": value} if kind == "text" else _image_part(value)
        for kind, value in placed_parts(message.id, message.text, message.images)
    ]
    return {"role": message.role, "content": content}


def _image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def message_fields_from_openai(message: object, index: int) -> tuple[str, str, list[str]]:
    """Return ``(role, text, images)`` of one OpenAI chat message.

    Content parts join as text with an ``<image>`` placeholder where each image stood, so
    that ``to_openai()`` gives the same parts back. A text-only message keeps its text.

    Raises:
        InvalidInputError: The message is not of the OpenAI shape.
    """
    if not isinstance(message, Mapping):
        raise InvalidInputError(f"messages[{index}] must be a dict, got {type(message).__name__}")
    role = message.get("role")
    content = message.get("content")
    if not isinstance(role, str):
        raise InvalidInputError(f"messages[{index}] needs a string 'role'")
    if isinstance(content, str):
        return role, content, []
    if not isinstance(content, Iterable) or isinstance(content, (bytes, Mapping)):
        raise InvalidInputError(
            f"messages[{index}] 'content' must be a string or a list of content parts"
        )
    texts: list[str] = []
    images: list[str] = []
    parts = list(content)
    text_only = all(isinstance(p, Mapping) and p.get("type") == "text" for p in parts)
    for part in parts:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and isinstance(part.get("image_url"), Mapping):
            url = part["image_url"].get("url")
            if not isinstance(url, str):
                raise InvalidInputError(f"messages[{index}] has an image_url part without a url")
            images.append(url)
            texts.append(IMAGE_PLACEHOLDER)
        else:
            raise InvalidInputError(
                f"messages[{index}] has a content part of unsupported type {kind!r}"
            )
    separator = "\n" if text_only else " "
    return role, separator.join(texts), images
