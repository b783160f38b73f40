"""What the exporters and importers of other formats share. Pure: no I/O.

* How a thread's role names map onto the roles of chat APIs that know only a few.
* How a message's text and images become an ordered list of text and image parts (as in
  ``to_openai()``), and how such parts become text and images again.
* How an import derives its thread and message ids, so that importing the same export
  twice finds the thread the first import made instead of making a second one.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from threadmem_mongo._images import IMAGE_PLACEHOLDER, Part, is_blob_ref, placed_parts
from threadmem_mongo._models import RoleMessage
from threadmem_mongo._validation import check_optional_str
from threadmem_mongo.errors import InvalidInputError

#: Roles every chat API knows; any other role name is a participant of its own.
STANDARD_ROLES = frozenset({"user", "assistant", "system"})

#: The namespace of the uuid5 ids that imports derive.
IMPORT_NAMESPACE = uuid.UUID("ed582ad7-2a85-4918-9790-2665bf505038")


@dataclass(frozen=True)
class ImportedMessage:
    """One message read from another format, before it has ids and a thread.

    Attributes:
        role: The role name.
        text: The text, with ``<image>`` placeholders where images stood between texts.
        images: The image URLs and data URIs, in order.
        created: Epoch seconds the format recorded, or None to use the import's time.
        metadata: Data to keep with the message (original ids and the like).
    """

    role: str
    text: str
    images: tuple[str, ...] = ()
    created: float | None = None
    metadata: dict[str, Any] | None = None


def speaker_text(role: str, text: str) -> str:
    """Return ``text`` as said by ``role``: prefixed with ``"<role>: "`` for a role chat
    APIs do not know, so the model can tell the participants apart."""
    if role in STANDARD_ROLES:
        return text
    return f"{role}: {text}" if text else f"{role}:"


def message_parts(message: RoleMessage, text: str | None = None) -> list[Part]:
    """Return the text and image parts of ``message`` in the order ``to_openai()`` gives.

    Without ``<image>`` placeholders the text comes first and the images follow; with
    them, each placeholder is replaced by the next image and the text pieces between
    them are stripped (empty pieces are left out).

    Args:
        message: The message; its images must be URLs or data URIs, not GridFS
            references.
        text: The text to use instead of the message's own (e.g. with a speaker prefix).

    Raises:
        InvalidInputError: The placeholders do not match the images, or an image is a
            GridFS reference.
    """
    body = message.text if text is None else text
    for image in message.images:
        if is_blob_ref(image):
            raise InvalidInputError(
                f"message {message.id!r} holds an unresolved image reference {image!r}; "
                "export messages read with resolve_images=True"
            )
    if not message.images:
        return [("text", body)]
    return placed_parts(message.id, body, message.images)


def text_and_images(parts: Sequence[Part]) -> tuple[str, list[str]]:
    """Return the text and images that ``parts`` (in order) stand for.

    Texts before all images join with newlines and the images follow without
    placeholders, so a message posted as text plus images exports as it was posted.
    When a text follows an image, every part is joined with spaces and each image
    becomes an ``<image>`` placeholder, so the export gives the same order back.
    """
    texts = [value for kind, value in parts if kind == "text"]
    images = [value for kind, value in parts if kind == "image"]
    kinds = [kind for kind, _ in parts]
    if "image" not in kinds or "text" not in kinds[kinds.index("image") :]:
        return "\n".join(texts), images
    return " ".join(
        IMAGE_PLACEHOLDER if kind == "image" else value for kind, value in parts
    ), images


def data_uri(media_type: str, data: str) -> str:
    """Return the data URI of a base64 payload of type ``media_type``."""
    return f"data:{media_type};base64,{data}"


def data_uri_parts(uri: str) -> tuple[str, str]:
    """Return ``(media type, base64 payload)`` of a stored (already checked) data URI;
    the media type in lower case, as MIME types compare."""
    header, _, payload = uri.partition(",")
    return header[len("data:") :].split(";", 1)[0].lower(), payload


def check_list(value: object, what: str) -> list[Any]:
    """Return ``value`` as a list if it is a list-like of items (not a string or a dict)."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise InvalidInputError(f"{what} must be a list, got {type(value).__name__}")
    return list(value)


def check_mapping(value: object, what: str) -> Mapping[str, Any]:
    """Return ``value`` if it is a dict, else raise ``InvalidInputError`` naming ``what``."""
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{what} must be a dict, got {type(value).__name__}")
    return value


def check_string(value: object, what: str) -> str:
    """Return ``value`` if it is a string, else raise ``InvalidInputError`` naming ``what``."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, got {type(value).__name__}")
    return value


# -- idempotent imports ------------------------------------------------------------------


def import_thread_id(source: str, owner_id: str | None, key: str) -> str:
    """Return the id of the thread that importing ``key`` from ``source`` for
    ``owner_id`` makes: the same for the same three, whichever process asks.

    Raises:
        InvalidInputError: ``owner_id`` is neither None nor a string.
    """
    check_optional_str("owner_id", owner_id)
    name = json.dumps([source, owner_id, key], ensure_ascii=False)
    return str(uuid.uuid5(IMPORT_NAMESPACE, name))


def import_message_id(thread_id: str, index: int) -> str:
    """Return the id of the ``index``-th imported message of thread ``thread_id``."""
    return str(uuid.uuid5(IMPORT_NAMESPACE, f"{thread_id}/{index}"))


def content_key(data: object) -> str:
    """Return a digest of JSON ``data`` that ignores key order and whitespace.

    Raises:
        InvalidInputError: ``data`` is not made of JSON values.
    """
    try:
        text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"the export is not JSON data: {exc}") from exc
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def build_messages(
    parsed: Sequence[ImportedMessage], thread_id: str, *, derived_ids: bool, now: float
) -> list[RoleMessage]:
    """Return the messages of a new thread from ``parsed``.

    Args:
        parsed: The messages as read from the format.
        thread_id: The new thread's id.
        derived_ids: Derive each message id from the thread id and its position (an
            idempotent import); else each gets a new random id.
        now: The time for messages the format gave no time; each later one gets a
            microsecond more, so they keep their order when sorted by time.

    Raises:
        InvalidInputError: A message is not acceptable (empty text, bad image, ...).
    """
    messages = []
    for index, item in enumerate(parsed):
        fields: dict[str, Any] = {
            "role": item.role,
            "text": item.text,
            "images": list(item.images),
            "thread_id": thread_id,
            "created": item.created if item.created is not None else now + index * 1e-6,
            "metadata": item.metadata,
        }
        if derived_ids:
            fields["id"] = import_message_id(thread_id, index)
        messages.append(RoleMessage(**fields))
    return messages


def holds_import(stored: Sequence[RoleMessage], imported: Sequence[RoleMessage]) -> bool:
    """Return whether a stored thread starts with the imported messages: the same ids,
    roles and texts, in order (messages posted after the import do not matter)."""
    if len(stored) < len(imported):
        return False
    return all(
        (old.id, old.role, old.text) == (new.id, new.role, new.text)
        for old, new in zip(stored, imported, strict=False)
    )


def messages_from_openai_export(data: object) -> list[ImportedMessage]:
    """Return the messages of ``{"messages": [...]}`` in OpenAI chat format (what
    ``to_openai()`` returns).

    Roles are kept; ``text`` and ``image_url`` parts become text and images as
    ``text_and_images`` places them, so a message posted as text plus images comes back
    with the text it was posted with.

    Raises:
        InvalidInputError: ``data`` is not of that shape.
    """
    export = check_mapping(data, "an OpenAI chat export")
    if set(export) != {"messages"}:
        raise InvalidInputError('an OpenAI chat export must be {"messages": [...]}')
    parsed = []
    for index, raw in enumerate(check_list(export["messages"], "messages")):
        where = f"messages[{index}]"
        message = check_mapping(raw, where)
        role = check_string(message.get("role"), f"{where} 'role'")
        content = message.get("content")
        if isinstance(content, str):
            parsed.append(ImportedMessage(role=role, text=content))
            continue
        parts: list[Part] = []
        for number, raw_part in enumerate(check_list(content, f"{where} 'content'")):
            part = check_mapping(raw_part, f"{where}.content[{number}]")
            if part.get("type") == "text":
                parts.append(("text", check_string(part.get("text"), f"{where} text")))
            elif part.get("type") == "image_url":
                image = check_mapping(part.get("image_url"), f"{where} 'image_url'")
                parts.append(("image", check_string(image.get("url"), f"{where} image url")))
            else:
                raise InvalidInputError(
                    f"{where}.content[{number}] is a {part.get('type')!r} part; only 'text' "
                    "and 'image_url' parts can be imported"
                )
        text, images = text_and_images(parts)
        parsed.append(ImportedMessage(role=role, text=text, images=tuple(images)))
    return parsed
