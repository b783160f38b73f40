"""The seed's walk-through, as run by ``threadmem demo``."""

from __future__ import annotations

import pprint
from collections.abc import Callable

from threadmem_mongo._store import ThreadStore
from threadmem_mongo._thread import RoleThread

CAT_PICTURE = (
    "https://upload.wikimedia.org/wikipedia/commons/c/c7/Tabby_cat_with_blue_eyes-3336579.jpg"
)


def run_demo(store: ThreadStore | None = None, echo: Callable[[str], None] = print) -> RoleThread:
    """Create the demo thread, post the seed's four messages, and print what it holds."""
    thread = RoleThread(
        owner_id="random123",
        public=True,
        name="My thread",
        metadata={"purpose": "demo"},
        store=store,
    )
    thread.post(role="user", msg="Hey there!")
    thread.post(role="assistant", msg="Hello!")
    thread.post(role="user", msg="What do you see on this picture?", images=[CAT_PICTURE])
    thread.post(role="assistant", msg="I see a cat with blue eyes.")
    echo(f"created thread {thread.id} (version {thread.version})")
    for message in thread.messages():
        echo(repr(message))
    echo(pprint.pformat(thread.to_openai(), width=100, sort_dicts=False))
    return thread
