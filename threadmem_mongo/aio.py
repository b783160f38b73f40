"""The asyncio API: the same operations and names as the sync API, awaited.

Built on pymongo's native ``AsyncMongoClient``; it reads and writes the same documents
with the same version semantics and errors, so a thread written by one API reads back
identically through the other:

```python
from threadmem_mongo.aio import AsyncRoleThread, configure

configure(uri="mongodb://localhost:27017")
thread = await AsyncRoleThread.create(owner_id="bot-1", name="support")
await thread.post(role="user", msg="Hey there!")
```

Where the two differ: a thread is created with ``await AsyncRoleThread.create(...)``
(the constructor cannot write, and raises ``TypeError``); ``watch`` and ``watch_all``
are read with ``async for``; ``RoleMessage.find`` is ``AsyncRoleThread.find_messages``;
and ``configure`` does not take ``mongomock://``.

Any event loop and any thread may use it. pymongo binds a client to one loop, so every
other loop gets a copy of the client, closed when that loop shuts down its async
generators (``asyncio.run`` and ``asyncio.Runner`` do). ``await close()`` closes the
library's clients of the loop it runs on.
"""

from threadmem_mongo._async_store import AsyncThreadStore
from threadmem_mongo._async_thread import AsyncRoleThread
from threadmem_mongo._config import close_async as close
from threadmem_mongo._config import configure_async as configure

__all__ = ["AsyncRoleThread", "AsyncThreadStore", "close", "configure"]
