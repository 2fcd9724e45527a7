"""One way to run the hub's long-lived work: named, guarded tasks, and one way to stop them.

``create_guarded_task`` starts a coroutine as a named task that logs its own crash (with its name and traceback),
and, when the task is essential, sets ``crashed`` so the process turns unready and exits non-zero instead of
limping on without it. An essential task that returns on its own is a crash too: long-lived work only ends when
it is cancelled. ``stop`` cancels a group of tasks and waits for them, at most ``timeout``, naming any that do not
finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

log = logging.getLogger(__name__)


class Crashed:
    """Which essential tasks ended by themselves; ``event`` is set on the first. Once ``closing`` is set (the
    process is stopping them), an essential task that returns has done what it was asked."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.names: list[str] = []
        self.closing = False

    def __bool__(self) -> bool:
        return self.event.is_set()

    async def wait(self) -> None:
        await self.event.wait()


def create_guarded_task(
    coro: Coroutine[Any, Any, Any], *, name: str, crashed: Crashed | None = None
) -> asyncio.Task[Any]:
    """Run ``coro`` as task ``name``; its end by anything but cancellation is logged, and, when ``crashed`` is
    given (an essential task), recorded there."""
    task = asyncio.create_task(coro, name=name)

    def ended(done: asyncio.Task[Any]) -> None:
        if done.cancelled():
            return
        exc = done.exception()
        if exc is not None:
            log.error("task %s crashed: %r", name, exc, exc_info=exc)
        elif crashed is not None and crashed.closing:
            return
        elif crashed is not None:
            log.error("task %s ended on its own; it should run until the process stops", name)
        else:
            return
        if crashed is not None:
            crashed.names.append(name)
            crashed.event.set()

    task.add_done_callback(ended)
    return task


async def stop(tasks: Iterable[asyncio.Task[Any]], *, timeout: float = 10.0) -> None:
    """Cancel ``tasks`` and wait for them, at most ``timeout`` seconds; the ones still running are logged."""
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if not pending:
        return
    _, stuck = await asyncio.wait(pending, timeout=timeout)
    if stuck:
        names = ", ".join(sorted(t.get_name() for t in stuck))
        log.warning("%d task(s) did not stop within %gs: %s", len(stuck), timeout, names)
