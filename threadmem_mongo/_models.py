"""Pydantic models: the message users handle, and the V1 exchange schemas.

``RoleMessage`` is what ``thread.messages()`` returns. The ``V1*`` schemas are the
wire format of the original SQL-backed threadmem, kept so that ``to_v1()`` / ``from_v1()``
exchange threads with it and with HTTP APIs built on it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from threadmem_mongo import _validation
from threadmem_mongo._images import IMAGE_PLACEHOLDER, check_stored_image
from threadmem_mongo._openai import message_to_openai
from threadmem_mongo.errors import InvalidInputError

if TYPE_CHECKING:
    from threadmem_mongo._store import ThreadStore


def check_placeholders(text: str, images: int) -> None:
    """Raise ``InvalidInputError`` unless ``text`` has no ``<image>`` placeholder or one per
    image (text without images may say ``<image>`` as it likes)."""
    placeholders = text.count(IMAGE_PLACEHOLDER)
    if images and placeholders not in (0, images):
        raise InvalidInputError(
            f"the text has {placeholders} {IMAGE_PLACEHOLDER} placeholder(s) but the "
            f"message has {images} image(s); use one placeholder per image, or none"
        )


def new_id() -> str:
    """Return a new random id (uuid4, as a string)."""
    return str(uuid.uuid4())


class V1Role(BaseModel):
    """A participant of a thread: who speaks under a role name.

    Attributes:
        name: The role name messages are posted under, e.g. ``"assistant"``.
        user_id: The id of the user or agent behind the role.
        user_name: A display name.
        icon: An icon URL.
        description: Free text about the role.
    """

    model_config = ConfigDict(strict=True)

    name: str
    user_id: str
    user_name: str
    icon: str
    description: str | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidInputError(f"invalid role: {exc}") from exc
        _validation.check_role(self.name)


class V1RoleMessage(BaseModel):
    """Exchange schema of one message (as in the original threadmem).

    ``RoleMessage.to_v1`` and ``RoleMessage.from_v1`` convert to and from it.

    Attributes:
        id: The message id.
        role: The role name that posted it.
        text: The text.
        images: Each image as a URL or a data URI (or a ``gridfs:<id>`` reference, if
            the message was read with ``resolve_images=False``).
        private: Whether the message is private; None (as the original schema allows)
            is read as False.
        metadata: Free-form data stored with the message.
        created: Epoch seconds when it was created.
        thread_id: The thread it belongs to; ``RoleThread.from_v1`` replaces it with the
            thread's id.
    """

    id: str
    role: str
    text: str
    images: list[str] = []
    private: bool | None = None
    metadata: dict[str, Any] | None = None
    created: float
    thread_id: str | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidInputError(f"invalid V1RoleMessage: {exc}") from exc


class V1RoleThread(BaseModel):
    """Exchange schema of a thread with its messages and roles.

    ``version`` is a string in the original schema; here it carries the integer version
    as text. ``RoleThread.to_v1`` and ``RoleThread.from_v1`` convert to and from it.

    Attributes:
        owner_id: Who owns the thread.
        public: Whether the thread is public.
        name: A display name.
        metadata: Free-form data.
        id: The thread id.
        messages: The messages, in posting order.
        role_mapping: The thread's roles, by name (each key is its role's name).
        version: The thread's version as text (``"3"``) from ``to_v1``; the original
            threadmem stores a hash of the thread's content here. ``from_v1`` ignores
            it: the stored thread restarts at version 0.
        created: Epoch seconds when the thread was created.
        updated: Epoch seconds of its last change.
        remote: The HTTP server the original threadmem reads a remote thread through;
            ``to_v1`` leaves it None and ``from_v1`` does not keep it.
    """

    owner_id: str | None = None
    public: bool
    name: str | None = None
    metadata: dict[str, Any] | None = None
    id: str
    messages: list[V1RoleMessage]
    role_mapping: dict[str, V1Role] = {}
    version: str | None = None
    created: float
    updated: float
    remote: str | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidInputError(f"invalid V1RoleThread: {exc}") from exc


class RoleMessage(BaseModel):
    """One message of a thread.

    Messages are created by [`RoleThread.post`][threadmem_mongo.RoleThread.post];
    build one yourself only to pass it to ``add_msg()``.

    Attributes:
        role: The role name that posted it.
        text: The text. ``<image>`` placeholders in it place the images in ``to_openai()``.
        thread_id: The thread it belongs to (``None`` until it is added to one).
        images: Each image as an ``http(s)`` URL or a data URI. A message read with
            ``resolve_images=False`` (from ``RoleThread.messages``) holds
            ``gridfs:<id>`` references instead for images stored in GridFS; so may one
            returned by ``RoleThread.update_message``.
        private: Private messages are left out of ``messages(include_private=False)``.
        created: Epoch seconds when it was created.
        id: A uuid4 string, unique across threads.
        metadata: Free-form data stored with the message.

    Raises:
        InvalidInputError: On construction, if a field is not acceptable.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    # The sync message search behind ``find``, set by the query layer
    # (``threadmem_mongo._thread_lookup``) when the package is imported. That layer
    # imports the document code and the stores, which build RoleMessages, so importing it
    # from here would be a circle.
    _search: ClassVar[Callable[..., Any]]

    role: str
    text: str
    thread_id: str | None = None
    images: list[str] = Field(default_factory=list)
    private: bool = False
    created: float = Field(default_factory=time.time)
    id: str = Field(default_factory=new_id)
    metadata: dict[str, Any] | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidInputError(f"invalid message: {exc}") from exc
        _validation.check_role(self.role)
        _validation.check_text(self.text, has_images=bool(self.images))
        _validation.check_metadata(self.metadata)
        for index, image in enumerate(self.images):
            check_stored_image(image, index)
        check_placeholders(self.text, len(self.images))

    def to_openai(self) -> dict[str, Any]:
        """Return the message in OpenAI chat format.

        A text-only message becomes ``{"role": ..., "content": text}``. A message with
        images becomes content parts: where the text holds ``<image>`` placeholders, each
        is replaced by the next image; without placeholders the text comes first and the
        images follow.

        Returns:
            An OpenAI chat message: ``{"role": ..., "content": ...}``, the content a
                string or a list of ``text`` and ``image_url`` parts. Each image's URL is
                the stored string as it is.

        Raises:
            InvalidInputError: The number of ``<image>`` placeholders is not zero and does
                not match the number of images.
        """
        return message_to_openai(self)

    @classmethod
    def find(
        cls, *, store: ThreadStore | None = None, **filters: str | int | float | bool | None
    ) -> list[RoleMessage]:
        """Find messages across all threads by equality on ``id``, ``role``,
        ``thread_id`` and ``text``.

        Only the matching messages are sent back, never whole threads (the server reads
        the threads that hold a match, found through the ``messages.id`` index when
        ``id`` is given). Results are ordered by
        thread creation time, then by position in the thread. The async API has
        ``AsyncRoleThread.find_messages``.

        Args:
            store: The store to search; the configured default if omitted.
            **filters: Field values to match exactly; each a string, number, bool or
                None. Private messages match too.

        Returns:
            The matching messages, with images resolved to data URIs.

        Raises:
            InvalidInputError: An unknown field, or a value that is not a scalar.
            ImageNotFoundError: An image stored in GridFS is missing.
        """
        found: list[RoleMessage] = cls._search(store=store, **filters)
        return found

    @classmethod
    def _use_search(cls, search: Callable[..., Any]) -> None:
        """Set the function behind ``find``: the sync message search of the layer above.

        Called once, when ``threadmem_mongo`` is imported; not for applications.
        """
        RoleMessage._search = search

    def to_v1(self) -> V1RoleMessage:
        """Return the exchange schema of this message.

        Returns:
            A ``V1RoleMessage`` with the same fields; images as this object holds them.
        """
        return V1RoleMessage(**self.model_dump())

    @classmethod
    def from_v1(cls, schema: V1RoleMessage) -> RoleMessage:
        """Build a message from its exchange schema, keeping its id and ``created``.

        Args:
            schema: The message; a ``private`` of None becomes False.

        Returns:
            The message, checked as on construction.

        Raises:
            InvalidInputError: A field is not acceptable (for example an image that is
                not a URL or a data URI, or empty text without images).
        """
        data = schema.model_dump()
        data["private"] = bool(data["private"])
        return cls(**data)
