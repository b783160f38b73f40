"""Google ADK sessions stored as threads: ``ThreadMemSessionService``.

Install with ``pip install "threadmem-mongo[adk]"``. Each ADK session is one thread
whose id is ``ThreadMemSessionService.thread_id(app_name, user_id, session_id)``; each
event appended to it is one message of that thread, in order. The thread's metadata
holds the session-scoped state (as JSON text) and the time of the last update.
App-scoped (``app:``) and user-scoped (``user:``) state live in threads of their own,
one per app and one per app and user, so every session of that app or user shares it.

Every change is one atomic, version-conditional update of one document: an event and
the session state it changes land together, or neither does. A session object that is
older than the stored session (another writer appended since it was read) is refused
with ADK's ``StaleSessionError`` before anything is written.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

from google.adk.errors._stale_session_error import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.platform import time as platform_time
from google.adk.platform import uuid as platform_uuid
from google.adk.sessions.base_session_service import (
    BaseSessionService,
    GetSessionConfig,
    ListSessionsResponse,
)
from google.adk.sessions.session import Session
from google.adk.sessions.state import State
from google.genai import types
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_jsonable_python
from pymongo.errors import DuplicateKeyError

from threadmem_mongo import InputTypeError, InvalidInputError, RoleMessage, V1RoleThread
from threadmem_mongo.aio import AsyncRoleThread, AsyncThreadStore
from threadmem_mongo.errors import ImageFormatError, ThreadNotFoundError, VersionConflictError
from threadmem_mongo.integrations import _async_thread_io, _stored_items

__all__ = ["ThreadMemSessionService"]

#: Thread metadata keys. ``adk_kind`` tells session threads from shared-state threads.
KIND_KEY = "adk_kind"
APP_NAME_KEY = "adk_app_name"
USER_ID_KEY = "adk_user_id"
SESSION_ID_KEY = "adk_session_id"
STATE_KEY = "adk_state"
UPDATE_TIME_KEY = "adk_update_time"

SESSION_KIND = "session"
APP_STATE_KIND = "app_state"
USER_STATE_KIND = "user_state"

#: Message metadata keys: the event as JSON text, and which of its content parts are
#: images kept in the message's ``images`` (their bytes are left out of the JSON).
EVENT_KEY = "adk_event"
IMAGE_PARTS_KEY = "adk_image_parts"
#: Where in the event JSON its text stood (a JSON Pointer): the text is stored once, as
#: the message's text.
TEXT_PATH_KEY = "adk_text_path"

#: Longest rendering of a function call or response in a message's readable text; the
#: whole call is in the event JSON.
MAX_RENDERED_CALL_CHARS = 2000

#: How often a shared-state merge re-reads and retries after losing a race. Each lost
#: race means another writer's merge landed, so the merges as a whole always progress.
SHARED_STATE_ATTEMPTS = 100

_STALE_MESSAGE = (
    "The session has been modified in storage since it was loaded. "
    "Please reload the session before appending more events."
)

#: MIME types of the image parts that go through the library's image path; other inline
#: data stays in the event JSON.
_IMAGE_MIME = re.compile(r"image/[A-Za-z0-9.+-]+")

#: Namespace of the message ids derived from (thread id, event id).
_MESSAGE_ID_NAMESPACE = uuid.UUID("6f0b3c1e-7a52-5d1f-9c0e-3b1f2a8d4e61")


def _part(value: str) -> str:
    # Percent-encoding escapes ':' and '%', so the joined id parses back one way only.
    return quote(value, safe="")


def _check_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InputTypeError(f"{name} must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            f"{name} holds a character that cannot be stored as UTF-8 (a lone surrogate)"
        ) from None
    return value


def _check_session_id(value: object) -> str | None:
    return None if value is None else _check_str("session_id", value)


def _json_text(name: str, value: Mapping[str, Any]) -> str:
    try:
        return json.dumps(to_jsonable_python(dict(value)), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} holds a value that has no JSON form: {exc}") from exc


def _bytes_as_text(value: Any) -> Any:
    """``value`` with every ``bytes`` made text: decoded if UTF-8, else base64; models
    become their fields, sets lists."""
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(value).decode("ascii")
    if isinstance(value, BaseModel):
        return _bytes_as_text(value.model_dump())
    if isinstance(value, dict):
        return {_bytes_as_text(key): _bytes_as_text(item) for key, item in value.items()}
    if isinstance(value, (list, set)):
        return [_bytes_as_text(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_bytes_as_text(item) for item in value)
    return value


def _state_as_json(name: str, state: dict[str, Any]) -> Any:
    """``state`` as JSON data, as ADK's SQL services store state (2.14 and later).

    Values pydantic can serialize keep that form (datetimes as ISO text, models as
    their fields); if any value cannot be, bytes that are not UTF-8 become base64 text,
    and if that is not enough either, every value with no JSON form becomes its
    ``str()``. The whole state is converted at once, as the SQL services do.

    Raises:
        InvalidInputError: Not even that gives JSON (a value that contains itself).
    """
    failures = (PydanticSerializationError, UnicodeDecodeError)
    try:
        for serialize_unknown in (False, True):
            with contextlib.suppress(*failures):
                return to_jsonable_python(state, serialize_unknown=serialize_unknown)
            with contextlib.suppress(*failures):
                return to_jsonable_python(
                    _bytes_as_text(state), serialize_unknown=serialize_unknown
                )
    except (ValueError, RecursionError) as exc:
        # A value that contains itself.
        raise InvalidInputError(f"{name} holds a value that has no JSON form: {exc}") from exc
    raise InvalidInputError(f"{name} holds a value that has no JSON form")


def _split_state(name: str, state: object) -> dict[str, dict[str, Any]]:
    """Split a state dict into its app, user and session parts (temp keys dropped), each
    converted to JSON data as ``_state_as_json`` does, so what is returned is what the
    store gives back later."""
    if state is None:
        state = {}
    if not isinstance(state, Mapping):
        raise InputTypeError(f"{name} must be a dict or None, got {type(state).__name__}")
    parts: dict[str, dict[str, Any]] = {"app": {}, "user": {}, "session": {}}
    for key, value in state.items():
        if not isinstance(key, str):
            raise InputTypeError(f"{name} keys must be strings, got {key!r}")
        if key.startswith(State.APP_PREFIX):
            parts["app"][key.removeprefix(State.APP_PREFIX)] = value
        elif key.startswith(State.USER_PREFIX):
            parts["user"][key.removeprefix(State.USER_PREFIX)] = value
        elif not key.startswith(State.TEMP_PREFIX):
            parts["session"][key] = value
    converted: dict[str, dict[str, Any]] = _state_as_json(name, parts)
    return converted


def _merged_state(
    session_state: Mapping[str, Any], app_state: Mapping[str, Any], user_state: Mapping[str, Any]
) -> dict[str, Any]:
    merged = dict(session_state)
    merged.update((State.APP_PREFIX + key, value) for key, value in app_state.items())
    merged.update((State.USER_PREFIX + key, value) for key, value in user_state.items())
    return merged


def _stored_state(thread: AsyncRoleThread) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((thread.metadata or {}).get(STATE_KEY) or "{}")
    return state


def _is_duplicate(exc: InvalidInputError) -> bool:
    return isinstance(exc.__cause__, DuplicateKeyError)


# -- events <-> messages -------------------------------------------------------------------


def _image_data_uri(part: types.Part) -> str | None:
    blob = part.inline_data
    if blob is None or blob.data is None or not blob.mime_type:
        return None
    mime = blob.mime_type
    if not _IMAGE_MIME.fullmatch(mime):
        return None
    uri = f"data:{mime};base64,{base64.b64encode(blob.data).decode('ascii')}"
    try:
        RoleMessage(role="image", text="", images=[uri])
    except ImageFormatError:
        # A kind the library refuses to store as an image (SVG): it stays in the JSON.
        return None
    return uri


def _clip(text: str) -> str:
    if len(text) <= MAX_RENDERED_CALL_CHARS:
        return text
    return text[: MAX_RENDERED_CALL_CHARS - 1] + "…"


def _rendered(part: types.Part) -> str:
    """The readable text of one non-image content part."""
    if part.text is not None:
        return part.text
    if part.function_call is not None:
        call = part.function_call
        args = json.dumps(to_jsonable_python(call.args or {}, fallback=str), ensure_ascii=False)
        return _clip(f"[call {call.name}({args})]")
    if part.function_response is not None:
        reply = part.function_response
        body = json.dumps(
            to_jsonable_python(reply.response or {}, fallback=str), ensure_ascii=False
        )
        return _clip(f"[{reply.name} returned {body}]")
    if part.executable_code is not None:
        return part.executable_code.code or ""
    if part.code_execution_result is not None:
        return part.code_execution_result.output or ""
    if part.inline_data is not None:
        return f"[{part.inline_data.mime_type or 'data'}]"
    if part.file_data is not None:
        return f"[file {part.file_data.file_uri or ''}]"
    return ""


def _message_id(thread_id: str, event_id: str) -> str:
    # Derived, not the event id itself: message ids are unique across threads, while
    # event ids need only be unique within a session.
    return str(uuid.uuid5(_MESSAGE_ID_NAMESPACE, json.dumps([thread_id, event_id])))


def _event_to_message(thread_id: str, event: Event) -> RoleMessage:
    """The stored message of ``event``: readable role and text, the event as JSON text in
    the metadata, and its image parts as the message's images. Temp state is left out."""
    try:
        data = json.loads(event.model_dump_json(exclude_defaults=True))
    except PydanticSerializationError as exc:
        raise InvalidInputError(f"event {event.id!r} has no JSON form: {exc}") from exc
    delta = (data.get("actions") or {}).get("state_delta")
    if isinstance(delta, dict):
        data["actions"]["state_delta"] = {
            key: value for key, value in delta.items() if not key.startswith(State.TEMP_PREFIX)
        }
    parts = event.content.parts if event.content is not None and event.content.parts else []
    images: list[str] = []
    image_parts: list[int] = []
    pieces: list[str] = []
    for index, part in enumerate(parts):
        image = _image_data_uri(part)
        if image is None:
            pieces.append(_rendered(part))
            continue
        images.append(image)
        image_parts.append(index)
        pieces.append("<image>")
        del data["content"]["parts"][index]["inline_data"]["data"]
    if images:
        # Only the placeholders put there for the image parts may remain.
        pieces = [p if p == "<image>" else p.replace("<image>", "[image]") for p in pieces]
    text = "\n".join(piece for piece in pieces if piece)
    if not text and not images:
        text = "(no content)"
    metadata: dict[str, Any] = {}
    # The text is stored once: as the message's text, which fills this place again.
    pointer = _stored_items.take_text(data, text)
    if pointer is not None:
        metadata[TEXT_PATH_KEY] = pointer
    metadata[EVENT_KEY] = json.dumps(data, ensure_ascii=False)
    if image_parts:
        metadata[IMAGE_PARTS_KEY] = image_parts
    author = event.author if event.author.strip() else "(unknown)"
    return RoleMessage(
        id=_message_id(thread_id, event.id),
        role=author,
        text=text,
        images=images,
        created=float(event.timestamp),
        metadata=metadata,
    )


def _event_from_message(message: RoleMessage) -> Event:
    """The ADK event a stored message holds, its images put back as inline bytes."""
    metadata = message.metadata or {}
    stored = metadata[EVENT_KEY]
    pointer = metadata.get(TEXT_PATH_KEY)
    if pointer:
        data = json.loads(stored)
        _stored_items.put_text(data, pointer, message.text)
        # Validated from JSON text, as stored: bytes fields are base64 there.
        stored = json.dumps(data, ensure_ascii=False)
    event = Event.model_validate_json(stored)
    for index, image in zip(metadata.get(IMAGE_PARTS_KEY) or [], message.images, strict=True):
        content = event.content
        blob = content.parts[index].inline_data if content and content.parts else None
        if blob is None:
            raise ValueError(f"stored event {event.id!r} lost its image part {index}")
        try:
            blob.data = base64.b64decode(image.partition(",")[2], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"stored event {event.id!r} has an unreadable image") from exc
    return event


def _at_or_after(events: list[Event], after_timestamp: float) -> list[Event]:
    """The events whose timestamp is ``after_timestamp`` or later, in stored order (the
    rule of ADK's own services since 2.15)."""
    return [event for event in events if event.timestamp >= after_timestamp]


def _recent(events: list[Event], count: int | None) -> list[Event]:
    """The last ``count`` of ``events``; all of them if ``count`` is None."""
    if count is None:
        return events
    return events[-count:] if count else []


class ThreadMemSessionService(BaseSessionService):
    """An ADK session service that stores each session as a thread.

    Use it wherever ADK takes a session service, for example
    ``Runner(agent=..., app_name=..., session_service=ThreadMemSessionService())``.
    Sessions written by one process are read by any other using the same store.

    An argument of the wrong type raises ``threadmem_mongo.InputTypeError``, both an
    ``InvalidInputError`` and the ``TypeError`` ADK's own services raise where they
    raise one (a ``user_id`` that is a list, say); a bad value of the right type raises
    ``InvalidInputError``.

    Args:
        store: The async store to use; the configured default
            (``threadmem_mongo.aio.configure``) if omitted, looked up at each call.

    Raises:
        InputTypeError: ``store`` is not an ``AsyncThreadStore``.
    """

    def __init__(self, *, store: AsyncThreadStore | None = None) -> None:
        if store is not None and not isinstance(store, AsyncThreadStore):
            raise InputTypeError(
                f"store must be an AsyncThreadStore or None, got {type(store).__name__}"
            )
        self._store = store
        # By event loop too: an asyncio lock serves one loop, and ADK's sync Runner.run
        # runs each call on a loop of its own, in a thread of its own.
        self._locks: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Lock] = {}
        self._waiting: dict[tuple[asyncio.AbstractEventLoop, str], int] = {}

    # -- ids -------------------------------------------------------------------------------

    @staticmethod
    def thread_id(app_name: str, user_id: str, session_id: str) -> str:
        """Return the id of the thread that holds a session.

        ``adk:<app>:<user>:<session>``, each part percent-encoded (``:`` and ``%``
        included), so distinct sessions never share a thread id and plain names stay
        readable.

        Args:
            app_name: The session's app name.
            user_id: The session's user id.
            session_id: The session id.

        Returns:
            The thread id.

        Raises:
            InputTypeError: An argument is not a string.
        """
        parts = (
            _check_str("app_name", app_name),
            _check_str("user_id", user_id),
            _check_str("session_id", session_id),
        )
        return "adk:" + ":".join(_part(p) for p in parts)

    @staticmethod
    def app_state_thread_id(app_name: str) -> str:
        """Return the id of the thread holding an app's ``app:`` state.

        Raises:
            InputTypeError: ``app_name`` is not a string.
        """
        return "adk-app:" + _part(_check_str("app_name", app_name))

    @staticmethod
    def user_state_thread_id(app_name: str, user_id: str) -> str:
        """Return the id of the thread holding a user's ``user:`` state in an app.

        Raises:
            InputTypeError: An argument is not a string.
        """
        app = _part(_check_str("app_name", app_name))
        return f"adk-user:{app}:{_part(_check_str('user_id', user_id))}"

    # -- sessions --------------------------------------------------------------------------

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        """Create and store a session, in one write (plus one per shared state changed).

        Args:
            app_name: The app name.
            user_id: The user id.
            state: Initial state; ``app:`` and ``user:`` keys go to the shared state,
                ``temp:`` keys are dropped, the rest is the session's own. It is stored
                as JSON, as ADK's SQL services store it: a value with no JSON form is
                stored as its ``str()``, bytes that are not UTF-8 as base64 text.
            session_id: The session id (surrounding spaces removed); a new one from
                ADK's id generator (a uuid4) if None or blank.

        Returns:
            The session, with its state merged with the app's and the user's.

        Raises:
            AlreadyExistsError: A session with this id exists for this app and user;
                nothing was written.
            InvalidInputError: An argument is not acceptable, or a state value
                contains itself; nothing was written.
        """
        _check_str("app_name", app_name)
        _check_str("user_id", user_id)
        given = _check_session_id(session_id)
        chosen = given.strip() if given else None
        sid = chosen or platform_uuid.new_uuid()
        parts = _split_state("state", state)
        # ADK's clock, as its own services use: a test clock set there applies here too.
        now = platform_time.get_time()
        schema = V1RoleThread(
            id=self.thread_id(app_name, user_id, sid),
            owner_id=user_id,
            public=False,
            name=sid,
            metadata={
                KIND_KEY: SESSION_KIND,
                APP_NAME_KEY: app_name,
                USER_ID_KEY: user_id,
                SESSION_ID_KEY: sid,
                STATE_KEY: _json_text("state", parts["session"]),
                UPDATE_TIME_KEY: now,
            },
            messages=[],
            created=now,
            updated=now,
        )
        try:
            thread = await AsyncRoleThread.from_v1(schema, store=self._store)
        except InvalidInputError as exc:
            if _is_duplicate(exc):
                raise AlreadyExistsError(f"Session with id {sid} already exists.") from exc
            raise
        app_state = await self._shared_state(
            self.app_state_thread_id(app_name), APP_STATE_KIND, app_name, None, parts["app"]
        )
        user_state = await self._shared_state(
            self.user_state_thread_id(app_name, user_id),
            USER_STATE_KIND,
            app_name,
            user_id,
            parts["user"],
        )
        session = Session(
            id=sid,
            app_name=app_name,
            user_id=user_id,
            state=_merged_state(parts["session"], app_state, user_state),
            last_update_time=now,
        )
        session._storage_update_marker = str(thread.version)
        return session

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> Session | None:
        """Return a stored session with its events, or None if there is none.

        Args:
            app_name: The app name.
            user_id: The user id.
            session_id: The session id (surrounding spaces removed).
            config: ``num_recent_events`` loads only the last events (read from the
                store as a slice, whatever the session's length); ``after_timestamp``
                keeps the events whose timestamp is at or after it, in stored order
                (and with both, the last ``num_recent_events`` of those).

        Returns:
            The session with its state merged with the app's and the user's, or None.

        Raises:
            InvalidInputError: An argument is not acceptable.
        """
        _check_str("app_name", app_name)
        _check_str("user_id", user_id)
        sid = _check_str("session_id", session_id).strip()
        if config is not None and not isinstance(config, GetSessionConfig):
            raise InputTypeError(
                f"config must be a GetSessionConfig or None, got {type(config).__name__}"
            )
        recent = config.num_recent_events if config is not None else None
        after = config.after_timestamp if config is not None else None
        thread_id = self.thread_id(app_name, user_id, sid)
        # Events need not be in time order, so a time bound has to see every event; the
        # count alone reads only the last ones.
        last = recent if after is None else None
        try:
            thread = await AsyncRoleThread.get(thread_id, last=last, store=self._store)
        except ThreadNotFoundError:
            return None
        events = [_event_from_message(m) for m in await thread.messages()]
        if after is not None:
            events = _recent(_at_or_after(events, after), recent)
        app_state = await self._read_shared(self.app_state_thread_id(app_name))
        user_state = await self._read_shared(self.user_state_thread_id(app_name, user_id))
        metadata = thread.metadata or {}
        session = Session(
            id=sid,
            app_name=app_name,
            user_id=user_id,
            state=_merged_state(_stored_state(thread), app_state, user_state),
            events=events,
            last_update_time=float(metadata.get(UPDATE_TIME_KEY, thread.updated)),
        )
        session._storage_update_marker = str(thread.version)
        return session

    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        """List the sessions of an app (of one user, if given), without their events.

        Args:
            app_name: The app name.
            user_id: Only this user's sessions; None for every user's.

        Returns:
            The sessions with merged state, oldest update first (ties by user id, then
            session id).

        Raises:
            InvalidInputError: An argument is not acceptable.
        """
        _check_str("app_name", app_name)
        wanted: dict[str, Any] = {KIND_KEY: SESSION_KIND, APP_NAME_KEY: app_name}
        user_states: dict[str, dict[str, Any]] = {}
        if user_id is not None:
            wanted[USER_ID_KEY] = _check_str("user_id", user_id)
            user_states[user_id] = await self._read_shared(
                self.user_state_thread_id(app_name, user_id)
            )
        else:
            holders = await AsyncRoleThread.find(
                metadata={KIND_KEY: USER_STATE_KIND, APP_NAME_KEY: app_name},
                last=0,
                store=self._store,
            )
            for holder in holders:
                user_states[(holder.metadata or {})[USER_ID_KEY]] = _stored_state(holder)
        app_state = await self._read_shared(self.app_state_thread_id(app_name))
        threads = await AsyncRoleThread.find(metadata=wanted, last=0, store=self._store)
        sessions = []
        for thread in threads:
            metadata = thread.metadata or {}
            owner = metadata[USER_ID_KEY]
            session = Session(
                id=metadata[SESSION_ID_KEY],
                app_name=app_name,
                user_id=owner,
                state=_merged_state(_stored_state(thread), app_state, user_states.get(owner, {})),
                last_update_time=float(metadata.get(UPDATE_TIME_KEY, thread.updated)),
            )
            session._storage_update_marker = str(thread.version)
            sessions.append(session)
        sessions.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=sessions)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete a session: its thread and every event in it. A missing one is ignored.

        App and user state stay, as they belong to every session of the app or user.

        Raises:
            InvalidInputError: An argument is not acceptable.
        """
        sid = _check_str("session_id", session_id).strip()
        thread_id = self.thread_id(app_name, user_id, sid)
        await _async_thread_io.delete_thread(self._store, thread_id)

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        """Return a user's ``user:`` state in an app, keys without the prefix.

        Raises:
            InvalidInputError: An argument is not acceptable.
        """
        return await self._read_shared(self.user_state_thread_id(app_name, user_id))

    # -- events ----------------------------------------------------------------------------

    async def append_event(self, session: Session, event: Event) -> Event:
        """Store an event and the state it changes, then add it to ``session``.

        Partial (streaming) events are returned untouched and not stored. ``temp:``
        state changes reach ``session.state`` but are not stored. The event and the
        session's own state change are one conditional update of the session's thread;
        ``app:`` and ``user:`` changes are merged into their threads right after.
        Appending the same event again (equal, same id) changes nothing. State values
        are stored as in ``create_session``: one with no JSON form as its ``str()``,
        in the stored state and in the stored event alike, while ``session.state`` and
        the returned event keep the value itself, as with ADK's SQL services.

        Args:
            session: The session, as returned by this service.
            event: The event to append.

        Returns:
            The event, with its ``temp:`` state changes removed.

        Raises:
            StaleSessionError: The stored session changed since ``session`` was read
                (another writer appended); nothing was written. Reload it and retry.
            SessionNotFoundError: The session is not in the store.
            AlreadyExistsError: A different event with this event's id is in the
                session.
            InvalidInputError: ``session`` or ``event`` is of the wrong type (an
                ``InputTypeError``), the event has no JSON form (its ``output``, say),
                or a state value contains itself; nothing was written.
        """
        if not isinstance(session, Session):
            raise InputTypeError(f"session must be a Session, got {type(session).__name__}")
        if not isinstance(event, Event):
            raise InputTypeError(f"event must be an Event, got {type(event).__name__}")
        if event.partial:
            return event
        delta = event.actions.state_delta if event.actions else None
        parts = _split_state("event.actions.state_delta", delta)
        thread_id = self.thread_id(session.app_name, session.user_id, session.id)
        message = _event_to_message(thread_id, event)
        # Appends of one event loop to one session take turns, so tasks sharing a session
        # object (parallel agents of one invocation) each see the version the previous
        # one left, instead of failing as stale. Other loops and processes append
        # unordered: a stale one fails as stale.
        async with self._turn(thread_id):
            return await self._append(session, event, parts, thread_id, message)

    async def _append(
        self,
        session: Session,
        event: Event,
        parts: dict[str, dict[str, Any]],
        thread_id: str,
        message: RoleMessage,
    ) -> Event:
        try:
            thread = await AsyncRoleThread.get(thread_id, last=0, store=self._store)
        except ThreadNotFoundError:
            raise SessionNotFoundError(f"Session {session.id} not found.") from None
        if not await self._is_current(session, thread):
            if await self._holds_equal(thread_id, message):
                return event
            raise StaleSessionError(_STALE_MESSAGE)
        state = _stored_state(thread)
        state.update(parts["session"])
        thread.metadata = {
            **(thread.metadata or {}),
            STATE_KEY: _json_text("state", state),
            UPDATE_TIME_KEY: float(event.timestamp),
        }
        try:
            await thread.save(append=message)
        except VersionConflictError:
            raise StaleSessionError(_STALE_MESSAGE) from None
        except ThreadNotFoundError:
            raise SessionNotFoundError(f"Session {session.id} not found.") from None
        except InvalidInputError:
            held = await self._held_message(thread_id, message.id)
            if held is None:
                raise
            if _event_from_message(held) == _event_from_message(message):
                return event
            raise AlreadyExistsError(f"Event {event.id} already exists.") from None
        if parts["app"]:
            await self._shared_state(
                self.app_state_thread_id(session.app_name),
                APP_STATE_KIND,
                session.app_name,
                None,
                parts["app"],
            )
        if parts["user"]:
            await self._shared_state(
                self.user_state_thread_id(session.app_name, session.user_id),
                USER_STATE_KIND,
                session.app_name,
                session.user_id,
                parts["user"],
            )
        session._storage_update_marker = str(thread.version)
        session.last_update_time = float(event.timestamp)
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        return self._commit_event_to_session(session, event)

    @contextlib.asynccontextmanager
    async def _turn(self, thread_id: str) -> AsyncIterator[None]:
        key = (asyncio.get_running_loop(), thread_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]
                del self._locks[key]

    async def _is_current(self, session: Session, thread: AsyncRoleThread) -> bool:
        """Whether ``session`` holds the stored session's latest revision."""
        marker = session._storage_update_marker
        if marker is not None:
            return marker == str(thread.version)
        # A session this service did not hand out (built by hand, or by another
        # service): as ADK's SQL service does, accept it unless the store moved past
        # its last update time and its last event is not the stored last event.
        stored_time = float((thread.metadata or {}).get(UPDATE_TIME_KEY, 0.0))
        if stored_time <= session.last_update_time:
            return True
        latest = await AsyncRoleThread.get(thread.id, last=1, store=self._store)
        last = await latest.messages(resolve_images=False)
        if not last:
            return not session.events
        return bool(session.events) and _event_from_stored_id(last[-1]) == session.events[-1].id

    async def _held_message(self, thread_id: str, message_id: str) -> RoleMessage | None:
        found = await AsyncRoleThread.find_messages(
            thread_id=thread_id, id=message_id, store=self._store
        )
        return found[0] if found else None

    async def _holds_equal(self, thread_id: str, message: RoleMessage) -> bool:
        held = await self._held_message(thread_id, message.id)
        return held is not None and _event_from_message(held) == _event_from_message(message)

    # -- shared state ----------------------------------------------------------------------

    async def _read_shared(self, thread_id: str) -> dict[str, Any]:
        try:
            thread = await AsyncRoleThread.get(thread_id, last=0, store=self._store)
        except ThreadNotFoundError:
            return {}
        return _stored_state(thread)

    async def _shared_state(
        self,
        thread_id: str,
        kind: str,
        app_name: str,
        user_id: str | None,
        delta: dict[str, Any],
    ) -> dict[str, Any]:
        """Merge ``delta`` into a shared-state thread (created if missing) and return
        the merged state; with no delta, just read it.

        Each merge is a conditional write of the thread's state; one that loses a race
        re-reads and merges again, so concurrent merges of different keys all land.
        """
        if not delta:
            return await self._read_shared(thread_id)
        conflict: VersionConflictError | None = None
        for _ in range(SHARED_STATE_ATTEMPTS):
            try:
                thread = await AsyncRoleThread.get(thread_id, last=0, store=self._store)
            except ThreadNotFoundError:
                if await self._create_shared(thread_id, kind, app_name, user_id, delta):
                    return dict(delta)
                continue
            state = _stored_state(thread)
            state.update(delta)
            thread.metadata = {**(thread.metadata or {}), STATE_KEY: _json_text("state", state)}
            try:
                await thread.save()
            except VersionConflictError as exc:
                conflict = exc
                continue
            return state
        assert conflict is not None
        raise conflict

    async def _create_shared(
        self,
        thread_id: str,
        kind: str,
        app_name: str,
        user_id: str | None,
        state: dict[str, Any],
    ) -> bool:
        """Create a shared-state thread holding ``state``; False if one was created
        by someone else first."""
        now = time.time()
        metadata: dict[str, Any] = {
            KIND_KEY: kind,
            APP_NAME_KEY: app_name,
            STATE_KEY: _json_text("state", state),
        }
        if user_id is not None:
            metadata[USER_ID_KEY] = user_id
        schema = V1RoleThread(
            id=thread_id,
            owner_id=user_id,
            public=False,
            name=f"{kind} of {app_name}" if user_id is None else f"{kind} of {user_id}",
            metadata=metadata,
            messages=[],
            created=now,
            updated=now,
        )
        try:
            await AsyncRoleThread.from_v1(schema, store=self._store)
        except InvalidInputError as exc:
            if _is_duplicate(exc):
                return False
            raise
        return True


def _event_from_stored_id(message: RoleMessage) -> str:
    """The event id of a stored message, read from its event JSON."""
    data = json.loads((message.metadata or {})[EVENT_KEY])
    return str(data.get("id", ""))
