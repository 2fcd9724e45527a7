"""The flow-control window for QoS 1 publishes: a FIFO counting semaphore whose size can change.

The MQTT adapter takes a slot per publish in flight and frees it on PUBACK; each CONNACK announces the broker's
Receive Maximum, which becomes the new size. Waiters are served in arrival order, a shrunk window lets no one in
until enough slots come back, and a waiter cancelled just after it was handed a slot gives the slot back.
Pure asyncio: no MQTT here, so it is tested on its own (``tests/unit/protocol/test_window.py``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib


class Window:
    """At most ``limit`` holders at once (never less than one), first come first served."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.used = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody waits for one; never waits."""
        if self.used < self.limit and not self._waiters:
            self.used += 1
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # NB: the slot was handed over just before the cancellation; give it back.
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.used -= 1
        self._wake()

    def set_limit(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.used < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.used += 1
                waiter.set_result(None)
