"""A pymongo async client for every event loop, closed when its loop shuts down.

pymongo binds an ``AsyncMongoClient`` to the first event loop that uses it and refuses
every other loop. The async stores are meant to work from any loop and any thread (two
``asyncio.run`` calls, a thread per loop, a framework's sync wrapper that runs a loop
per call), so every collection call picks its pymongo collection here, through
``threadmem_mongo._async_collection``:

- The client a store was built on serves the loop it is bound to or, while it is bound
  to none, the first loop that asks for it.
- Every other loop gets a copy of that client, made on the loop's first call with the
  same constructor arguments, and shared by every store on the same client.
- For each loop it holds something for, the library keeps a *keeper*: an async generator started on
  that loop, which the loop's ``shutdown_asyncgens()`` closes (``asyncio.run`` and
  ``asyncio.Runner`` call it before they close the loop). Closing it closes the copies
  made for the loop, and the default store's own client if that served the loop, then
  forgets everything kept for the loop. It first lets the other async generators being
  closed finish, so their cleanup (a change stream's, say) still finds the client open.
  A client you passed in is never closed.

Loops that skip ``shutdown_asyncgens()``:

- A loop that is still used after it (the Agents SDK's ``Runner.run_sync`` calls it
  after each run and keeps the loop): its next call gets a new client and a new keeper,
  closed by the loop's next ``shutdown_asyncgens()``. asyncio warns (``ResourceWarning``)
  about async generators started on such a loop, pymongo's own and the keeper; where a
  warnings filter makes that an error, the keeper is not registered and its clients
  are closed at exit, on the loop, if the loop is then open and idle.
- A loop closed without it (LlamaIndex's helper for sync calls made inside async code
  does this): nothing can run on it any more, so its client cannot be closed. The
  library drops it when it next sets up a loop, or at exit. pymongo's background tasks
  on that loop are destroyed with it, and Python reports that on stderr.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

T = TypeVar("T")
Loop = asyncio.AbstractEventLoop
Client = AsyncMongoClient[Any]
Document = dict[str, Any]

#: Guards the tables below; reentrant, since dropping a closed loop's keeper while
#: setting up another releases that keeper under the same lock.
_lock = threading.RLock()
#: The keeper of every loop the library holds something for.
_keepers: dict[Loop, _Keeper] = {}
#: The clients the stores were built on, by ``id``, each with its copies.
_families: dict[int, LoopClients] = {}

#: The type of the awaitable ``aclose()`` returns, as ``shutdown_asyncgens()`` runs it.
_ACLOSE_TYPE_NAME = "async_generator_athrow"


#: The event loop running in this thread, or None: asyncio's C function, called as it is
#: on the hot path of every collection call.
running_loop: Callable[[], Loop | None] = asyncio._get_running_loop


def bound_loop(client: Client) -> Loop | None:
    """Return the event loop pymongo bound ``client`` to on its first use, or None.

    pymongo keeps it in the private ``_loop`` (4.9 and later); a test fails when that
    changes. A client without it counts as unbound.
    """
    loop = client.__dict__.get("_loop")
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None


class _Forgets(Protocol):
    def forget(self, loop: Loop) -> None: ...


class PerLoop(Generic[T]):
    """A value for each event loop, made by ``make`` on the loop's first ``get`` and
    forgotten when the loop shuts down.

    ``values`` is read without the lock (a dict lookup is atomic), so the hot path of a
    collection call is one lookup.
    """

    def __init__(self, make: Callable[[Loop], T]) -> None:
        self._make = make
        self.values: dict[Loop, T] = {}

    def get(self, loop: Loop) -> T:
        """Return the value of ``loop`` (which must run in this thread)."""
        value = self.values.get(loop)
        return value if value is not None else self.add(loop)

    def add(self, loop: Loop) -> T:
        """Make the value of ``loop`` (which must run in this thread) and return it."""
        with _lock:
            value = self.values.get(loop)
            if value is None:
                value = self._make(loop)
                keeper_of(loop).remember(self)
                self.values[loop] = value
            return value

    def forget(self, loop: Loop) -> None:
        """Drop the value of ``loop``."""
        self.values.pop(loop, None)


class LoopClients:
    """One client (the template a store was built on) and its copies, one per loop.

    Args:
        template: The client the stores were built on.
    """

    def __init__(self, template: Client) -> None:
        self.template = weakref.ref(template)
        #: Whether the library made the template (the default store's client): then it
        #: is closed when the loop it serves shuts down.
        self.owned = False
        #: The loop the template serves; None until a loop claims it, ``_RETIRED``
        #: once it was closed with its loop.
        self._home: Loop | object | None = None
        self.copies: PerLoop[Client] = PerLoop(self._copy)

    def client(self, template: Client, loop: Loop) -> Client:
        """Return the client for ``loop``: ``template`` or a copy of it."""
        with _lock:
            if self._home is None:
                self._home = bound_loop(template) or loop
                if self._home is loop:
                    keeper = keeper_of(loop)
                    keeper.remember(self)
                    if self.owned:
                        keeper.close_with_loop(template)
            if self._home is loop:
                return template
        return self.copies.get(loop)

    def _copy(self, loop: Loop) -> Client:
        template = self.template()
        if template is None:  # pragma: no cover - callers hold a collection of it
            raise RuntimeError("the client this store was built on is gone")
        copy: Client = template._duplicate()
        keeper_of(loop).close_with_loop(copy)
        return copy

    def forget(self, loop: Loop) -> None:
        """The loop shut down: a template the library made was closed with it, and serves
        no loop any more (a client you passed in still serves its loop)."""
        if self._home is loop and self.owned:
            self._home = _RETIRED

    def take_for_closing(self, loop: Loop | None, *, template: bool) -> list[Client]:
        """Return the clients to close on ``loop`` (the running one): its copy, and
        with ``template`` the template unless it serves another loop that is still open
        (whose keeper closes it). Neither is closed with its loop afterwards."""
        taken: list[Client] = []
        if loop is not None and loop in self.copies.values:
            copy = self.copies.values[loop]
            self.copies.forget(loop)
            _discard(loop, copy)
            taken.append(copy)
        home = self._home
        given = self.template()
        if not template or home is _RETIRED or given is None:
            return taken
        if isinstance(home, asyncio.AbstractEventLoop) and home is not loop:
            if not home.is_closed():
                return taken
            _discard(home, given)  # closed with its loop unshut: dropped
        else:
            _discard(loop, given)
            taken.append(given)
        self._home = _RETIRED
        return taken


_RETIRED = object()


class _Keeper:
    """What the library holds for one event loop, released when the loop shuts down.

    Its async generator is started on the loop, which registers it with the loop's
    ``shutdown_asyncgens()``; closing it there closes the clients made for the loop.
    """

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self._users: weakref.WeakSet[_Forgets] = weakref.WeakSet()
        self._clients: list[Client] = []
        self._generator: AsyncGenerator[None, None] | None = None
        generator = self._until_shutdown()
        try:
            # Its first step runs the loop's first-iteration hook, which registers it.
            step = generator.asend(None)
        except ResourceWarning:
            # On a loop past shutdown_asyncgens() the hook warns, and a warnings filter
            # made that an error: unregistered, this keeper's clients close at exit.
            with contextlib.suppress(StopIteration):
                generator.aclose().send(None)
            return
        with contextlib.suppress(StopIteration):
            step.send(None)  # it stops at the yield, awaiting nothing
        self._generator = generator

    def remember(self, user: _Forgets) -> None:
        """Have ``user`` forget this loop when it shuts down."""
        self._users.add(user)

    def close_with_loop(self, client: Client) -> None:
        """Close ``client`` when this loop shuts down."""
        self._clients.append(client)

    def discard(self, client: Client) -> None:
        """Do not close ``client`` with this loop (it was closed already)."""
        with contextlib.suppress(ValueError):
            self._clients.remove(client)

    async def _until_shutdown(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            # Off the loop (``drop``), nothing can be awaited; ``drop`` released already.
            if running_loop() is self.loop:
                await _other_generators_closed()
                await close_all(self.release())

    def release(self) -> list[Client]:
        """Forget this loop everywhere; return the clients to close."""
        with _lock:
            if _keepers.get(self.loop) is self:
                del _keepers[self.loop]
            for user in list(self._users):
                user.forget(self.loop)
            self._users = weakref.WeakSet()
            clients, self._clients = self._clients, []
            return clients

    def drop(self) -> list[Client]:
        """Release this loop from off it, finishing the generator without awaiting;
        return the clients that were to be closed with it."""
        clients = self.release()
        generator, self._generator = self._generator, None
        if generator is not None:
            closing = generator.aclose()
            try:
                closing.send(None)
            except (StopIteration, RuntimeError):
                pass  # finished; or already being closed by its own loop
            else:  # pragma: no cover - the generator awaits nothing off its loop
                closing.close()
        return clients


async def _other_generators_closed() -> None:
    """Wait for the other async generators that ``shutdown_asyncgens()`` is closing
    alongside a keeper (it runs each ``aclose()`` as a task)."""
    current = asyncio.current_task()
    closing = [
        task
        for task in asyncio.all_tasks()
        if task is not current and type(task.get_coro()).__name__ == _ACLOSE_TYPE_NAME
    ]
    if closing:
        await asyncio.wait(closing)


async def close_all(clients: Iterable[Client]) -> None:
    """Close ``clients``. An error cannot reach anyone while a loop shuts down, and a
    client whose close failed has nothing more to release."""
    for client in clients:
        with contextlib.suppress(Exception):
            await client.close()


def keeper_of(loop: Loop) -> _Keeper:
    """Return the keeper of ``loop`` (running in this thread), starting it if needed."""
    with _lock:
        keeper = _keepers.get(loop)
        if keeper is None:
            drop_closed_loops()
            keeper = _keepers[loop] = _Keeper(loop)
        return keeper


def _discard(loop: Loop | None, client: Client) -> None:
    keeper = _keepers.get(loop) if loop is not None else None
    if keeper is not None:
        keeper.discard(client)


def drop_closed_loops() -> None:
    """Forget the loops closed without ``shutdown_asyncgens()``, dropping their clients."""
    for keeper in [k for k in _keepers.values() if k.loop.is_closed()]:
        keeper.drop()


def family(client: Client) -> LoopClients:
    """Return ``client`` and its copies, shared by every store on ``client``."""
    with _lock:
        found = _families.get(id(client))
        if found is None or found.template() is not client:
            found = _families[id(client)] = LoopClients(client)
            weakref.finalize(client, _families.pop, id(client), None)
        return found


def collections(collection: object) -> PerLoop[AsyncCollection[Document]] | None:
    """Return ``collection`` as seen from each event loop, or None when it is not a
    pymongo collection (an adapter over mongomock, say), which is then used as it is.

    On a loop its client does not serve, it is the same collection (database, name and
    options) of that loop's copy of the client.
    """
    client = getattr(getattr(collection, "database", None), "client", None)
    if not isinstance(client, AsyncMongoClient) or not isinstance(collection, AsyncCollection):
        return None
    clients = family(client)
    home: AsyncCollection[Document] = collection

    def on(loop: Loop) -> AsyncCollection[Document]:
        chosen = clients.client(client, loop)
        if chosen is client:
            return home
        database = home.database
        return chosen.get_database(
            database.name,
            codec_options=database.codec_options,
            read_preference=database.read_preference,
            write_concern=database.write_concern,
            read_concern=database.read_concern,
        ).get_collection(
            home.name,
            codec_options=home.codec_options,
            read_preference=home.read_preference,
            write_concern=home.write_concern,
            read_concern=home.read_concern,
        )

    return PerLoop(on)


def own(client: Client) -> None:
    """Mark ``client`` as the library's: it is closed when the loop it serves shuts down."""
    family(client).owned = True


async def close(client: Client, *, template: bool) -> None:
    """Close the copies of ``client`` made for the running loop and, with ``template``,
    ``client`` itself unless it serves another loop that is still open (its keeper
    closes it there). Copies on other open loops are closed when those shut down.

    Args:
        client: A client the stores were built on.
        template: Whether to close ``client`` too (the library made it).
    """
    with _lock:
        clients = _families.get(id(client))
        if clients is not None and clients.template() is client:
            to_close = clients.take_for_closing(running_loop(), template=template)
        else:
            to_close = [client] if template else []
    for each in to_close:
        await each.close()


@atexit.register
def _release_at_exit() -> None:
    """Close the clients of loops that are open and idle at exit; drop the rest."""
    with _lock:
        keepers = list(_keepers.values())
    for keeper in keepers:
        clients = keeper.drop()
        loop = keeper.loop
        if clients and not loop.is_closed() and not loop.is_running():
            with contextlib.suppress(Exception):
                loop.run_until_complete(close_all(clients))
