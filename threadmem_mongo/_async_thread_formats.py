"""Exports and imports of a thread, part of ``AsyncRoleThread``.

``AsyncRoleThread`` inherits these methods from ``AsyncThreadFormats``: OpenAI chat,
the V1 exchange schema, Anthropic Messages, OpenAI Responses and OpenAI Assistants
exports. The conversions themselves are pure functions in ``_openai``, ``_anthropic``,
``_responses``, ``_assistants`` and ``_imports``; these methods read or store the thread.

This file is the source of both twins: ``tools/synchro.py`` turns it into the
synchronous ``_thread_formats.py``. Edit this file, then run ``python tools/synchro.py``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from threadmem_mongo import (
    _anthropic,
    _assistants,
    _imports,
    _responses,
    _validation,
)
from threadmem_mongo._async_store import AsyncThreadStore
from threadmem_mongo._document import ThreadState
from threadmem_mongo._images import is_blob_ref
from threadmem_mongo._models import (
    RoleMessage,
    V1RoleThread,
    new_id,
)
from threadmem_mongo._openai import message_fields_from_openai
from threadmem_mongo._state import check_role_mapping, new_state
from threadmem_mongo.errors import (
    InvalidInputError,
    ThreadNotFoundError,
)

if TYPE_CHECKING:
    from typing_extensions import Self


class AsyncThreadFormats:
    """The export and import methods of ``AsyncRoleThread``."""

    if TYPE_CHECKING:
        # Provided by AsyncRoleThread, which this class is a part of.
        _store: AsyncThreadStore
        _state: ThreadState

        @property
        def id(self) -> str: ...

        @property
        def owner_id(self) -> str | None: ...

        @property
        def public(self) -> bool: ...

        @property
        def name(self) -> str | None: ...

        @property
        def metadata(self) -> dict[str, Any] | None: ...

        @property
        def version(self) -> int: ...

        @property
        def created(self) -> float: ...

        @property
        def updated(self) -> float: ...

        async def messages(
            self, include_private: bool = True, *, resolve_images: bool = True
        ) -> list[RoleMessage]: ...

        async def _resolve(self, message: RoleMessage) -> RoleMessage: ...

        @classmethod
        async def _create(cls, state: ThreadState, store: AsyncThreadStore | None) -> Self: ...

        @classmethod
        async def get(
            cls, thread_id: str, *, last: int | None = None, store: AsyncThreadStore | None = None
        ) -> Self: ...

    # -- formats -------------------------------------------------------------------------

    async def to_openai(
        self, include_private: bool = True, *, image_url: Callable[[str], str] | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Return ``{"messages": [...]}`` in OpenAI chat format; see ``RoleMessage.to_openai``.

        Exports the loaded messages (all, unless loaded with ``last=``), in order.

        Args:
            include_private: Also export private messages.
            image_url: Maps each GridFS reference (``gridfs:<id>``) to a URL your app
                serves, instead of inlining the image as a data URI.

        Returns:
            ``{"messages": [...]}``, one OpenAI chat message per message.

        Raises:
            ImageNotFoundError: An image stored in GridFS is missing (without
                ``image_url``).
        """
        messages = await self.messages(include_private, resolve_images=image_url is None)
        if image_url is not None:
            messages = [
                m.model_copy(
                    update={"images": [image_url(i) if is_blob_ref(i) else i for i in m.images]}
                )
                for m in messages
            ]
        return {"messages": [m.to_openai() for m in messages]}

    @classmethod
    async def from_openai(
        cls,
        messages: Iterable[Mapping[str, Any]],
        *,
        owner_id: str | None = None,
        public: bool = False,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        store: AsyncThreadStore | None = None,
    ) -> Self:
        """Build and store a thread from OpenAI chat messages, in one write.

        Each message keeps its ``role``; string content becomes the text, and content
        parts are joined into text with an ``<image>`` placeholder where each image
        stood, so ``to_openai()`` gives the same parts back. Messages get new ids and
        the current time; the thread has no roles (``role_mapping`` is empty).

        Each image ``url`` must be an ``http(s)`` URL or a data URI (no file is read).
        ``gridfs:<id>`` references are refused (``ImageFormatError``): input can never
        point a message at an image stored for another thread.

        Args:
            messages: OpenAI chat messages: dicts with a string ``role`` and a
                ``content`` that is a string or a list of ``text`` and ``image_url``
                parts.
            owner_id: Who owns the thread.
            public: Whether the thread is public.
            name: A display name.
            metadata: Free-form data; keys must not start with ``$`` or contain ``.``.
            store: The store to use; the configured default if omitted.

        Returns:
            The new thread, at version 0.

        Raises:
            InvalidInputError: A message is not of the OpenAI shape, or a field is not
                acceptable; nothing was written.
            ThreadTooLargeError: The thread would exceed MongoDB's document size limit.
        """
        if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Iterable):
            raise InvalidInputError("messages must be a list of OpenAI chat messages")
        thread_id = new_id()
        parsed = []
        for index, raw in enumerate(messages):
            role, text, images = message_fields_from_openai(raw, index)
            parsed.append(RoleMessage(role=role, text=text, images=images, thread_id=thread_id))
        state = new_state(owner_id, public, name, metadata, None, parsed, thread_id)
        return await cls._create(state, store)

    async def to_v1(self) -> V1RoleThread:
        """Return the exchange schema of this thread (``version`` as text), images inlined.

        Holds the loaded messages (all, unless loaded with ``last=``), private ones
        included, and ``name``, ``public`` and ``metadata`` as this object holds them.

        Returns:
            The thread as a ``V1RoleThread``, with ``remote`` None.

        Raises:
            ImageNotFoundError: An image stored in GridFS is missing.
        """
        messages = await self.messages()
        return V1RoleThread(
            owner_id=self.owner_id,
            public=self.public,
            name=self.name,
            metadata=copy.deepcopy(self.metadata),
            id=self.id,
            messages=[m.to_v1() for m in messages],
            role_mapping=dict(self._state.roles),
            version=str(self.version),
            created=self.created,
            updated=self.updated,
        )

    @classmethod
    async def from_v1(cls, schema: V1RoleThread, *, store: AsyncThreadStore | None = None) -> Self:
        """Store a thread given as its exchange schema, keeping its ids, in one write.

        The thread and its messages keep their ids and ``created`` times, and the
        thread its ``updated`` time; each message's ``thread_id`` becomes the schema's
        ``id``. The schema's ``version`` is not kept: the stored thread restarts at
        version 0. Its ``remote`` is not kept either, and the thread has no expiry.

        Args:
            schema: The thread, e.g. from ``to_v1()`` or the original threadmem.
            store: The store to use; the configured default if omitted.

        Returns:
            The new thread, at version 0.

        Raises:
            InvalidInputError: The schema is invalid, or a thread with its id exists.
            ThreadTooLargeError: The thread would exceed MongoDB's document size limit.
        """
        if not isinstance(schema, V1RoleThread):
            raise InvalidInputError(f"from_v1() takes a V1RoleThread, got {type(schema).__name__}")
        messages = [
            RoleMessage.from_v1(m).model_copy(update={"thread_id": schema.id})
            for m in schema.messages
        ]
        state = ThreadState(
            id=schema.id,
            owner_id=schema.owner_id,
            public=schema.public,
            name=schema.name,
            metadata=_validation.check_metadata(schema.metadata),
            roles=check_role_mapping(schema.role_mapping),
            messages=messages,
            version=0,
            created=schema.created,
            updated=schema.updated,
        )
        return await cls._create(state, store)

    async def to_anthropic(self, include_private: bool = True) -> dict[str, Any]:
        """Return the thread in the Anthropic Messages API shape.

        ``system`` messages are lifted, in order, into ``system`` (joined by a blank
        line); ``assistant`` messages stay ``assistant``; ``user`` messages and those of
        every other role become ``user`` turns, the text of another role (a bot's name,
        ``tool``) prefixed with ``"<role>: "``. Content is a list of ``text`` and
        ``image`` blocks placed by ``<image>`` placeholders as in ``to_openai()``; a data
        URI becomes a ``base64`` source, a URL a ``url`` source, and images in GridFS are
        read and sent as ``base64``. Exports the loaded messages (all, unless loaded
        with ``last=``).

        Args:
            include_private: Also export private messages.

        Returns:
            ``{"system": str | None, "messages": [...]}``: ``system`` is None when the
                thread has no system message.

        Raises:
            InvalidInputError: A system message has images, an image is not JPEG, PNG,
                GIF or WebP, or a message's placeholders do not match its images.
            ImageNotFoundError: An image stored in GridFS is missing.
        """
        return _anthropic.thread_to_anthropic(await self.messages(include_private))

    @classmethod
    async def from_anthropic(
        cls,
        messages: Iterable[Mapping[str, Any]],
        *,
        system: str | Iterable[Mapping[str, Any]] | None = None,
        owner_id: str | None = None,
        public: bool = False,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        store: AsyncThreadStore | None = None,
    ) -> Self:
        """Build and store a thread from an Anthropic Messages API conversation, in one write.

        The ``system`` prompt becomes a first ``system`` message. Each message keeps its
        role; string content becomes the text; ``text`` blocks followed by ``image``
        blocks become the text and the images; when a text block follows an image, the
        blocks join with spaces and an ``<image>`` placeholder where each image stood,
        so ``to_anthropic()`` gives the same blocks back. Messages get new ids and the
        current time, as with ``from_openai``; each call makes a new thread.

        Args:
            messages: ``MessageParam`` dicts: ``role`` ``"user"`` or ``"assistant"``, and
                ``content`` a string or a list of ``text`` and ``image`` blocks (image
                sources ``base64`` or ``url``).
            system: The system prompt: a string or a list of ``text`` blocks.
            owner_id: Who owns the thread.
            public: Whether the thread is public.
            name: A display name.
            metadata: Free-form data; keys must not start with ``$`` or contain ``.``.
            store: The store to use; the configured default if omitted.

        Returns:
            The new thread, at version 0.

        Raises:
            InvalidInputError: The conversation is not of the Messages API shape, holds
                blocks other than text and images, or a field is not acceptable; nothing
                was written.
            ThreadTooLargeError: The thread would exceed MongoDB's document size limit.
        """
        parsed = _anthropic.messages_from_anthropic(messages, system)
        return await cls._store_import(parsed, None, owner_id, public, name, metadata, store)

    async def to_responses(self, include_private: bool = True) -> list[dict[str, Any]]:
        """Return the thread as OpenAI Responses API input items.

        ``assistant`` messages become ``{"type": "message", "role": "assistant",
        "content": text}``; ``user``, ``system`` and ``developer`` messages keep their
        role with ``input_text`` and ``input_image`` parts (``"detail": "auto"``) placed
        by ``<image>`` placeholders as in ``to_openai()``; messages of every other role
        become ``user`` items whose text is prefixed with ``"<role>: "``. Images in
        GridFS are read and sent as data URIs. Exports the loaded messages (all, unless
        loaded with ``last=``).

        Args:
            include_private: Also export private messages.

        Returns:
            The ``input`` list of a ``responses.create`` call, one item per message.

        Raises:
            InvalidInputError: An assistant message has images (the Responses API takes
                none in assistant input), or a message's placeholders do not match its
                images.
            ImageNotFoundError: An image stored in GridFS is missing.
        """
        return _responses.thread_to_responses(await self.messages(include_private))

    @classmethod
    async def from_responses(
        cls,
        items: Iterable[Mapping[str, Any]],
        *,
        owner_id: str | None = None,
        public: bool = False,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        store: AsyncThreadStore | None = None,
    ) -> Self:
        """Build and store a thread from OpenAI Responses API input items, in one write.

        Each message item keeps its role (``user``, ``assistant``, ``system``,
        ``developer``); string content becomes the text, and ``input_text``,
        ``output_text``, ``refusal`` and ``input_image`` parts become the text and the
        images as in ``from_anthropic``. Messages get new ids and the current time;
        each call makes a new thread.

        Args:
            items: Message items, in the input form or the output-message form.
            owner_id: Who owns the thread.
            public: Whether the thread is public.
            name: A display name.
            metadata: Free-form data; keys must not start with ``$`` or contain ``.``.
            store: The store to use; the configured default if omitted.

        Returns:
            The new thread, at version 0.

        Raises:
            InvalidInputError: ``items`` is not a list of message items, an item is of
                another type (function calls, reasoning, ...), an image is given by
                ``file_id``, or a field is not acceptable; nothing was written.
            ThreadTooLargeError: The thread would exceed MongoDB's document size limit.
        """
        parsed = _responses.messages_from_responses(items)
        return await cls._store_import(parsed, None, owner_id, public, name, metadata, store)

    @classmethod
    async def import_openai_thread(
        cls,
        source: _assistants.ExportSource,
        *,
        owner_id: str | None = None,
        name: str | None = None,
        store: AsyncThreadStore | None = None,
    ) -> Self:
        """Store a thread from an OpenAI Assistants API export, in one write; idempotent.

        The export is what listing the thread's messages returned: the list object
        (``{"object": "list", "data": [...]}``), a list of ``thread.message`` objects,
        or a ``.jsonl`` file of them. Messages come out oldest first, with their
        ``created_at`` as ``created``; text and ``image_url`` parts become text and
        images; original ids, annotations, attachments and ``image_file`` ids are kept
        in each message's ``metadata["openai"]``, and the thread's id in the thread's.

        The thread id is derived from the export's thread id and ``owner_id`` (uuid5),
        and each message id from the thread id and the message's position, so importing
        the same export again returns the thread the first import made (messages posted
        since do not matter) instead of making a second one.

        Args:
            source: The export: a path (``str`` or ``os.PathLike``) of a ``.json`` or
                ``.jsonl``/``.ndjson`` file, or the parsed JSON (a dict or a list). A
                string is always a path, never JSON text.
            owner_id: Who owns the thread.
            name: A display name.
            store: The store to use; the configured default if omitted.

        Returns:
            The new thread at version 0, or the thread an earlier import of the same
                export made.

        Raises:
            InvalidInputError: The file cannot be read, the export is malformed or holds
                several threads, or the thread an earlier import made no longer starts
                with the export's messages; nothing was written.
            ThreadTooLargeError: The thread would exceed MongoDB's document size limit.
        """
        export = _assistants.parse_export(_assistants.export_data(source))
        thread_id = _imports.import_thread_id("openai-assistants", owner_id, export.thread_id)
        kept: dict[str, Any] = {"thread_id": export.thread_id}
        if not export.complete:
            kept["has_more"] = True
        return await cls._store_import(
            export.messages, thread_id, owner_id, False, name, {"openai": kept}, store
        )

    @classmethod
    async def _import_export(
        cls,
        format_name: str,
        data: object,
        *,
        owner_id: str | None = None,
        store: AsyncThreadStore | None = None,
    ) -> Self:
        """Store what ``threadmem export --format <format_name>`` printed; idempotent.

        The thread id is derived from the format, ``owner_id`` and a digest of the
        export's content, so importing the same export again returns the same thread.
        """
        if format_name == "openai":
            parsed = _imports.messages_from_openai_export(data)
        elif format_name == "anthropic":
            export = _imports.check_mapping(data, "an Anthropic export")
            if set(export) - {"system", "messages"}:
                raise InvalidInputError(
                    'an Anthropic export must be {"system": ..., "messages": [...]}'
                )
            parsed = _anthropic.messages_from_anthropic(
                export.get("messages"), export.get("system")
            )
        elif format_name == "responses":
            parsed = _responses.messages_from_responses(data)
        else:
            raise InvalidInputError(f"cannot import the format {format_name!r}")
        key = _imports.content_key(data)
        thread_id = _imports.import_thread_id(format_name, owner_id, key)
        return await cls._store_import(parsed, thread_id, owner_id, False, None, None, store)

    @classmethod
    async def _store_import(
        cls,
        parsed: list[_imports.ImportedMessage],
        thread_id: str | None,
        owner_id: object,
        public: object,
        name: object,
        metadata: object,
        store: AsyncThreadStore | None,
    ) -> Self:
        """Store the imported messages as a new thread in one write.

        With a ``thread_id`` (an idempotent import), message ids are derived from it,
        and a thread already stored under it that starts with the same messages is
        returned instead.
        """
        derived = thread_id is not None
        new_thread_id = thread_id if thread_id is not None else new_id()
        messages = _imports.build_messages(
            parsed, new_thread_id, derived_ids=derived, now=time.time()
        )
        state = new_state(owner_id, public, name, metadata, None, messages, new_thread_id)
        if not derived:
            return await cls._create(state, store)
        found = await cls._earlier_import(state, store)
        if found is not None:
            return found
        try:
            return await cls._create(state, store)
        except InvalidInputError:
            # The same import may have landed from elsewhere since the look-up.
            found = await cls._earlier_import(state, store)
            if found is None:
                raise
            return found

    @classmethod
    async def _earlier_import(
        cls, state: ThreadState, store: AsyncThreadStore | None
    ) -> Self | None:
        try:
            found = await cls.get(state.id, store=store)
        except ThreadNotFoundError:
            return None
        if not _imports.holds_import(found._state.messages, state.messages):
            raise InvalidInputError(
                f"thread {state.id!r} was imported from this export before and no longer "
                "starts with its messages; delete that thread to import the export again"
            )
        return found
