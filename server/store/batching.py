"""Group commit: concurrent writes that arrive while one is in flight are written together by the next statement.

A :class:`GroupCommit` lets one write run at a time. A write that finds none in flight yields one turn of the
event loop (no added wait: only what is ready runs, and at concurrency 1 that is nothing), then runs its own
single-row statement, unless writes queued meanwhile: requests that were read together, whose writes then share
one batch statement with it. Writes that arrive while one is in flight queue, and when it ends the queue — whatever
arrived meanwhile, at most ``max_size`` of it — is written by one batch statement in a task of its own, again and
again until the queue is empty. So under load PostgreSQL runs one statement, one commit and one round trip for
many writes, and the batches grow with the load.

The batch task belongs to no request: a request cancelled while its write is queued is dropped from the queue
(nothing written, as when a single statement is cancelled before it runs); one cancelled while its batch is in
flight gets no answer, but its batch — the other requests' rows, and its own, which a retry with the same id
finds — runs to its end. A write is answered only once its statement, and so its commit, has returned: a crash
loses no answered write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH: Final = 64
"""Writes per batch statement: bounds the statement's size, and the time a write waits behind one batch."""


class GroupCommit(Generic[T, R]):
    """Runs ``single(item)`` when idle (after one turn of the loop, when nothing queued meanwhile), otherwise
    queues ``item`` for ``batch(items)`` (``single`` again for a batch of one).

    ``batch`` answers one result per item, in order; what it raises, every item of that batch raises.
    """

    def __init__(
        self,
        single: Callable[[T], Awaitable[R]],
        batch: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        max_size: int = MAX_BATCH,
    ) -> None:
        self._single = single
        self._batch = batch
        self._max_size = max_size
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._busy = False
        self._drainer: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Writes waiting for the next batch (cancelled ones included until it is taken)."""
        return len(self._queue)

    async def write(self, item: T) -> R:
        if self._busy:
            future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
            self._queue.append((item, future))
            return await future
        self._busy = True
        try:
            # NB: one turn of the loop, no wait: the writes of requests already read (in this loop iteration)
            # queue meanwhile, and join this one's statement rather than wait for it to end.
            await asyncio.sleep(0)
        except BaseException:
            self._next()
            raise
        if self._queue:
            future = asyncio.get_running_loop().create_future()
            self._queue.insert(0, (item, future))
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
            return await future
        try:
            return await self._single(item)
        finally:
            self._next()

    def _next(self) -> None:
        """The write in flight has ended: start the queue's batch, or become idle."""
        if self._queue:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        else:
            self._busy = False
            self._drainer = None

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        """The next batch: the oldest queued writes whose requests still wait, at most ``max_size`` of them."""
        live = [entry for entry in self._queue if not entry[1].done()]
        batch, self._queue = live[: self._max_size], live[self._max_size :]
        return batch

    async def _drain(self) -> None:
        try:
            while batch := self._take():
                try:
                    # NB: a batch of one is a single write: the single-row statement is PostgreSQL's cheaper one.
                    results = (
                        [await self._single(batch[0][0])]
                        if len(batch) == 1
                        else await self._batch([item for item, _ in batch])
                    )
                    if len(results) != len(batch):
                        raise RuntimeError(f"a batch of {len(batch)} writes answered {len(results)} results")
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:
                    for _, future in batch:
                        future.cancel()
                    raise
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            # NB: the loop ends on an empty queue, or on cancellation (shutdown): then nobody would run the rest.
            for _, future in self._queue:
                future.cancel()
            self._queue.clear()
            self._busy = False
            self._drainer = None
