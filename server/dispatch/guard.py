"""Task hygiene for the transport loops.

:func:`finish` runs a database unit of work so that cancelling the caller does not cancel it halfway. The
``databases`` package leaks a pooled connection when a task is cancelled while a transaction is being opened (the
connection's use counter is raised before ``BEGIN`` and not lowered when ``BEGIN`` is interrupted), after which
``Database.disconnect()`` waits forever. So every unit of work of these loops runs in its own task, and a cancelled
caller waits for it to end before passing the cancellation on. Units of work are short (one or two statements).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def finish(work: Coroutine[Any, Any, T]) -> T:
    """Await ``work`` in its own task; if we are cancelled meanwhile, let it end first, then re-raise."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})  # NB: asyncio.wait never cancels what it waits for.
        if not task.cancelled():
            task.exception()  # NB: retrieved so asyncio does not log it as never retrieved; cancellation wins.
        raise
