"""What the adapters share: a framework item stored as one message, and the thread I/O.

An item is stored as a ``RoleMessage`` with a readable ``role`` and ``text`` (so
``RoleThread.get``, ``threadmem show`` and ``to_openai()`` make sense of it) and the item
itself, as JSON text, under one namespaced metadata key:

```text
metadata = {"<adapter key>": {"item": "<the item as JSON>",
                              "text": "<JSON Pointer>", "images": [<image slots>]}}
```

JSON text sidesteps the metadata key rules (item keys may start with ``$`` or hold
``.``). The text is stored once: when a string in the item is exactly the message's
readable text (a plain message's content, say), the item keeps ``null`` there and
``"text"`` records where, as a JSON Pointer (``"/content"``). Images in the item (a URL,
a data URI, or base64 with a MIME type) are moved into the message's ``images``, so
large ones go to GridFS like any posted image; the item keeps ``null`` where each stood,
and each slot records the path back to that place and whether the value was a URL/data
URI (``"url"``) or bare base64 (``"base64"``). ``"text"`` and ``"images"`` are left out
when there is nothing to record.

The thread I/O that stores and reads these messages is in ``_async_thread_io`` and its
generated sync twin ``_thread_io``. This module imports no framework.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from threadmem_mongo import (
    InputTypeError,
    InvalidInputError,
    RoleMessage,
)

PathPart = str | int
ImageForm = Literal["url", "base64"]

#: The text of an item that renders to nothing readable, e.g. ``"[reasoning]"``.
_EMPTY_TEXT = "[{}]"
_PLACEHOLDER = "<image>"


@dataclass(frozen=True)
class ImageSlot:
    """Where an image stands in an item.

    Attributes:
        path: Keys and list indexes from the item down to the image's value.
        form: ``"url"`` if the value is an http(s) URL or a data URI, ``"base64"`` if it
            is bare base64 (then ``mime`` names its type).
        mime: The MIME type of a ``"base64"`` value.
    """

    path: tuple[PathPart, ...]
    form: ImageForm
    mime: str | None = None


def check_thread_id(name: str, value: object) -> str:
    """Return ``value`` if it can name a thread (a non-empty string), else raise.

    Raises:
        InputTypeError: ``value`` is not a string.
        InvalidInputError: ``value`` is empty.
    """
    if not isinstance(value, str):
        raise InputTypeError(f"{name} must be a non-empty string, got {type(value).__name__}")
    if not value:
        raise InvalidInputError(f"{name} must be a non-empty string, got ''")
    return value


def check_owner_id(value: object) -> str | None:
    """Return ``value`` if it is None or a string, else raise ``InputTypeError``."""
    if value is not None and not isinstance(value, str):
        raise InputTypeError(f"owner_id must be a string or None, got {type(value).__name__}")
    return value


def to_json(value: object, what: str) -> str:
    """Return ``value`` as JSON text that MongoDB can store.

    Raises:
        InputTypeError: ``value`` holds a value of a type JSON has no form for (a set,
            say), where ``json.dumps``, and so the frameworks' JSON stores, raise
            ``TypeError``.
        InvalidInputError: ``value`` contains itself.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except TypeError as exc:
        raise InputTypeError(f"{what} cannot be stored as JSON: {exc}") from exc
    except ValueError as exc:
        raise InvalidInputError(f"{what} cannot be stored as JSON: {exc}") from exc
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates cannot be stored as UTF-8; escaped JSON keeps them exactly.
        text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text


def storable_text(text: str) -> str:
    """Return ``text`` with lone surrogates (which UTF-8 cannot hold) replaced by ``?``."""
    return text.encode("utf-8", "replace").decode("utf-8")


def image_slots(
    value: object, find: Callable[[Mapping[str, Any]], list[ImageSlot]]
) -> list[ImageSlot]:
    """Return the image slots in ``value``, depth first, as ``find`` spots them.

    ``find`` is called with every mapping inside ``value`` and returns the slots of that
    mapping, with paths relative to it; mappings inside a found slot are not searched.
    """
    return list(_walk(value, (), find))


def _walk(
    value: object, path: tuple[PathPart, ...], find: Callable[[Mapping[str, Any]], list[ImageSlot]]
) -> Iterator[ImageSlot]:
    if isinstance(value, Mapping):
        found = find(value)
        for slot in found:
            yield ImageSlot(path + slot.path, slot.form, slot.mime)
        taken = {slot.path[0] for slot in found if slot.path}
        for key, item in value.items():
            if key not in taken:
                yield from _walk(item, (*path, key), find)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, (*path, index), find)


def _get(value: Any, path: Sequence[PathPart]) -> Any:
    for part in path:
        value = value[part]
    return value


def set_at(value: Any, path: Sequence[PathPart], new: object) -> None:
    for part in path[:-1]:
        value = value[part]
    value[path[-1]] = new


def _as_image(slot: ImageSlot, value: object) -> str | None:
    """Return the image a message would store for ``value``, or None if it is no
    image the library accepts (then it stays in the item's JSON)."""
    if not isinstance(value, str):
        return None
    uri = value if slot.form == "url" else f"data:{slot.mime};base64,{value}"
    try:
        RoleMessage(role="user", text="", images=[uri])
    except InvalidInputError:
        return None
    return uri


def encode_item(
    item: object,
    *,
    key: str,
    role: str,
    text: str,
    slots: Sequence[ImageSlot],
    what: str,
) -> RoleMessage:
    """Return the message that stores ``item`` (not yet in any thread).

    Args:
        item: The framework item as JSON-compatible data.
        key: The adapter's metadata key.
        role: The message's role.
        text: Its readable text; ``"[<role>]"`` if empty and the item has no image.
        slots: Where images stand in ``item`` (see ``image_slots``).
        what: How to name the item in an error message.

    Raises:
        InvalidInputError: The item cannot be stored as JSON (an ``InputTypeError``
            for a value of a type JSON has no form for), or the message is not
            acceptable (for example a blank role).
    """
    data = copy.deepcopy(item)
    images: list[str] = []
    stored_slots: list[dict[str, Any]] = []
    for slot in slots:
        image = _as_image(slot, _get(data, slot.path))
        if image is None:
            continue
        set_at(data, slot.path, None)
        images.append(image)
        stored_slots.append({"path": list(slot.path), "form": slot.form})
    text = storable_text(text)
    if images:
        # The text is a rendering; a literal placeholder in it would be read as an
        # image position by to_openai().
        text = text.replace(_PLACEHOLDER, "[image]")
    elif not text.strip():
        text = _EMPTY_TEXT.format(role)
    stored: dict[str, Any] = {}
    pointer = take_text(data, text)
    if pointer is not None:
        stored["text"] = pointer
    stored["item"] = to_json(data, what)
    if stored_slots:
        stored["images"] = stored_slots
    return RoleMessage(role=role, text=text, images=images, metadata={key: stored})


def take_text(data: object, text: str) -> str | None:
    """Store ``text`` once: put ``null`` where it stands in ``data`` (the first string
    equal to it, depth first, below the top) and return where that is, as a JSON Pointer
    (RFC 6901, ``"/content"``, ``"/blocks/0/text"``); None, changing nothing, if no string
    of ``data`` is ``text`` (or ``text`` is empty)."""
    path = _path_of_text(data, text) if text else None
    if not path:
        return None
    set_at(data, path, None)
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def put_text(data: object, pointer: str, text: str) -> None:
    """Put ``text`` back where ``take_text`` said it stood.

    Raises:
        LookupError: ``pointer`` leads nowhere in ``data``.
        ValueError: ``pointer`` is not a JSON Pointer.
    """
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        raise ValueError(f"not a JSON Pointer: {pointer!r}")
    node: Any = data
    parts = [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]
    for index, part in enumerate(parts):
        key: Any = int(part) if isinstance(node, list) else part
        if index == len(parts) - 1:
            if isinstance(node, list) or (isinstance(node, dict) and key in node):
                node[key] = text
                return
            raise LookupError(pointer)
        node = node[key]


def _path_of_text(value: object, text: str) -> tuple[PathPart, ...] | None:
    """The path to the first string in ``value`` (depth first) equal to ``text``."""
    if isinstance(value, str):
        return () if value == text else None
    children: Iterable[tuple[PathPart, object]]
    if isinstance(value, Mapping):
        children = value.items()
    elif isinstance(value, list):
        children = enumerate(value)
    else:
        return None
    for part, child in children:
        found = _path_of_text(child, text)
        if found is not None:
            return (part, *found)
    return None


def decode_item(message: RoleMessage, key: str) -> Any | None:
    """Return the item ``message`` stores under ``key``, images put back; None if the
    message holds no readable item there (it was posted some other way)."""
    stored = (message.metadata or {}).get(key)
    if not isinstance(stored, Mapping) or not isinstance(stored.get("item"), str):
        return None
    try:
        data = json.loads(stored["item"])
        pointer = stored.get("text")
        if pointer is not None:
            put_text(data, pointer, message.text)
        slots = stored.get("images") or []
        for index, slot in enumerate(slots):
            image = message.images[index]
            value = image if slot["form"] == "url" else image.split(",", 1)[1]
            set_at(data, slot["path"], value)
    except (ValueError, LookupError, TypeError):
        return None
    return data
