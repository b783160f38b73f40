"""Keep a cancelled asyncio task cancelled when a driver call swallowed the request.

With a client-side operation timeout (``timeoutMS``, or ``pymongo.timeout()``), pymongo
runs network reads under ``asyncio.wait_for``. On Python 3.11, ``wait_for`` can return
the read's result and drop a cancellation that arrived meanwhile, so a task cancelled
while it waits on a change stream would carry on. Long-running loops call
``raise_if_cancelling`` after such calls.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelling() -> None:
    """Raise ``asyncio.CancelledError`` if the current task has been asked to cancel.

    Raises:
        asyncio.CancelledError: The running task has a pending cancellation request.
    """
    task = asyncio.current_task()
    # Task.cancelling() exists from Python 3.11; 3.10's wait_for has no such gap to close.
    cancelling = getattr(task, "cancelling", None)
    if cancelling is not None and cancelling():
        raise asyncio.CancelledError
