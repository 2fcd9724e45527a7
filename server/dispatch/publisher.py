"""The outbox publisher: pending spec events → the current state of each dirty resource → MQTT.

How it runs (one lifespan-owned :meth:`Dispatcher.run`):

* A LISTEN task sets ``wake`` on every NOTIFY on ``events``; a sweep task waits for ``wake`` (or, while the
  LISTEN is down, at most ``poll_interval``) and sweeps at most once per ``coalesce`` seconds: a wake after a
  quiet spell sweeps at once, a wake within ``coalesce`` of the last sweep waits out the rest of that window, so
  a burst of writes goes out in a few rounds of many resources rather than a round per NOTIFY. A sweep reads
  the pending events grouped per resource (:func:`server.store.outbox.pending`, capped per consumer) and queues
  the resources that are neither queued nor in flight. A consumer with queued work is left out of the read (its
  backlog would be read again on every sweep): its later events stay pending until its queue has drained, then
  the next sweep reads them (a resource published meanwhile is published again, at its newer state). An event
  for a resource in flight stays pending and is picked up by the sweep that follows the flight.
* Work is queued **per consumer** and ``concurrency`` workers serve the consumers round robin, at most one batch
  per consumer at a time, so thousands of deletes on one consumer delay another consumer's create by one batch
  at most.
* A batch publishes each row's state as read *after* its events were read, or with them: the sweep reads the rows
  of its first ``batch_size * concurrency`` resources in the same snapshot as their events, and a batch reads those
  of the others. It publishes that state (a deleting row only ever as a delete), waits for the broker's
  acknowledgements, and marks exactly the events it read as reconciled. Failed publishes go back to their
  consumer's queue with per-resource exponential backoff; they never hold up anything else.
* The marking rides on the next sweep's statement (one round trip for both; that sweep does not read those events
  as pending). While writes keep coming a sweep follows within ``coalesce``; when none does, ``MARK_DELAY`` after
  a batch a sweep runs for the marking alone, so nothing stays unmarked at rest.

At-least-once: a crash between the publish and the marking publishes again; agents drop duplicates by version.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import databases

from protocol import types
from protocol.errors import BrokerError, MaestroProtocolException
from server.dispatch import guard, listen, metrics, wire
from server.errors import DatabaseUnavailable
from server.settings import Settings
from server.store import logs, outbox, resources
from server.store.db import connection
from server.store.rows import ResourceRow

log = logging.getLogger(__name__)

UNAVAILABLE = "database_unavailable"
"""The reason of a batch that failed because the database is away (retried like any other, logged once)."""

MARK_DELAY = 0.1
"""Seconds a published batch's events wait for a sweep to mark them reconciled before one runs for them alone."""


@dataclasses.dataclass
class _Item:
    resource_id: str
    event_ids: set[int]
    first_written: datetime
    attempts: int = 0
    not_before: float = 0.0
    read: bool = False
    """Whether ``row`` is the resource as of a snapshot that has all of ``event_ids`` (None: it is gone)."""
    row: ResourceRow | None = None


@dataclasses.dataclass
class _Consumer:
    name: str
    items: dict[str, _Item] = dataclasses.field(default_factory=dict)
    busy: bool = False
    saturated: bool = False
    """The last sweep hit the per-consumer cap: sweep again once this queue runs dry."""


@dataclasses.dataclass(frozen=True)
class _Outcome:
    item: _Item
    ok: bool
    action: str = ""
    reason: str = ""


class Dispatcher:
    """Publishes spec events; see the module docstring. ``run()`` until cancelled."""

    def __init__(
        self,
        database: databases.Database,
        publisher: wire.Publisher,
        settings: Settings,
        *,
        dsn: str | None,
        source_events: str,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.owns = owns
        """Which consumers this replica publishes for (all when None): see :mod:`server.dispatch.instances`."""
        self.publisher = publisher
        self.dsn = dsn
        self.source_id = settings.transport.source_id
        self.source_events = source_events
        knobs = settings.dispatch
        self.poll_interval = knobs.dispatch_poll_interval
        self.coalesce = max(0.0, knobs.dispatch_coalesce)
        """The least time between two sweeps: the most a write waits for its round while writes keep coming."""
        self.concurrency = max(1, knobs.dispatch_concurrency)
        self.batch_size = max(1, knobs.publish_batch_size)
        self.per_consumer_scan = max(1, knobs.publish_scan_per_consumer)
        self.publish_timeout = knobs.publish_timeout
        self.backoff = knobs.publish_backoff
        self.wake = asyncio.Event()
        self._work = asyncio.Event()
        self._consumers: dict[str, _Consumer] = {}
        self._order: collections.deque[str] = collections.deque()
        self._inflight: set[str] = set()
        self._rescan = False
        self._unmarked: list[int] = []
        """Events published and acknowledged, to be marked reconciled by the next sweep."""
        self._mark_timer: asyncio.TimerHandle | None = None
        self.sweeps = 0
        self.deferred = 0
        """Sweeps that waited out the rest of a ``coalesce`` window (the others ran as soon as woken)."""
        self.listening = False
        """Whether our LISTEN is up: every spec event write notifies, so the sweeper then waits without a poll."""

    # --- lifecycle -------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Sweep, publish and (with a DSN) LISTEN until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                if self.dsn:
                    group.create_task(
                        listen.listen(
                            self.dsn, logs.SPEC_CHANNEL, self.wake, self.settings.database, on_state=self._listening
                        ),
                        name="dispatch:listen",
                    )
                group.create_task(self._sweeper(), name="dispatch:sweep")
                for n in range(self.concurrency):
                    group.create_task(self._worker(), name=f"dispatch:worker-{n}")
        finally:
            if self._mark_timer is not None:  # NB: what it would have marked is published again on the next start.
                self._mark_timer.cancel()
                self._mark_timer = None

    # --- sweeping --------------------------------------------------------------------------------------------

    def _listening(self, up: bool) -> None:
        self.listening = up
        self.wake.set()  # NB: the sweeper waits again, with a poll or without.

    async def _sweeper(self) -> None:
        failures = 0
        last = -self.coalesce
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if self.listening else self.poll_interval):
                    await self.wake.wait()
            window = last + self.coalesce - time.monotonic()
            if window > 0:
                self.deferred += 1
                await asyncio.sleep(window)  # NB: the NOTIFYs of this window join this one sweep.
            self.wake.clear()
            last = time.monotonic()
            try:
                await self.sweep()
                failures = 0
            except Exception as exc:
                failures += 1
                delay = self._delay(failures)
                # NB: an outage is logged once, by server.store.availability.
                level = logging.DEBUG if isinstance(exc, DatabaseUnavailable) else logging.WARNING
                log.log(level, "dispatch sweep failed (%r); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                self.wake.set()

    async def sweep(self) -> int:
        """Mark what was published reconciled and read pending work into the queues; returns how many resources
        were newly queued."""
        reconcile, self._unmarked = self._unmarked, []
        if self._mark_timer is not None:
            self._mark_timer.cancel()
            self._mark_timer = None
        skipped = set(self._backlogged())
        try:
            dirty = await guard.finish(self._pending(reconcile, skipped))
        except BaseException:
            self._unmarked[:0] = reconcile  # NB: the sweeper retries the sweep, and with it the marking.
            raise
        if self.owns is not None:
            owns = self.owns
            owned = {name: owns(name) for name in {d.consumer_name for d in dirty}.union(self._consumers)}
            dirty = [d for d in dirty if owned[d.consumer_name]]
            for name, held in self._consumers.items():
                if not owned[name]:  # NB: handed over to another replica; its events stay pending for the owner.
                    held.items.clear()
        if self._unmarked:  # NB: published while we read; they stay pending until the next sweep marks them.
            published = set(self._unmarked)
            dirty = [
                dataclasses.replace(d, event_ids=ids)
                for d in dirty
                if (ids := tuple(e for e in d.event_ids if e not in published))
            ]
        self.sweeps += 1
        self._rescan = False
        added = 0
        counts: collections.Counter[str] = collections.Counter()
        for d in dirty:
            counts[d.consumer_name] += 1
            if d.resource_id in self._inflight:
                self._rescan = True
                continue
            queue = self._consumers.get(d.consumer_name)
            if queue is None:
                queue = self._consumers[d.consumer_name] = _Consumer(d.consumer_name)
                self._order.append(d.consumer_name)
            item = queue.items.get(d.resource_id)
            if item is None:
                queue.items[d.resource_id] = _Item(
                    d.resource_id, set(d.event_ids), d.first_written, read=d.read, row=d.row
                )
                added += 1
            else:
                item.event_ids.update(d.event_ids)
                item.read, item.row = d.read, d.row  # NB: this snapshot has the new events too; or read it later.
        for name, queue in self._consumers.items():
            # NB: a consumer left out of the read (backlogged) may have more: sweep again once its queue is dry.
            queue.saturated = counts[name] >= self.per_consumer_scan or name in skipped
        self._update_gauge()
        if added:
            self._work.set()
        return added

    def _backlogged(self) -> list[str]:
        """The consumers with queued work: they hold their oldest pending resources, a sweep leaves them out (their
        backlog would be read, and its rows decoded, again on every sweep while it waits)."""
        return [name for name, queue in self._consumers.items() if queue.items]

    async def _pending(self, reconcile: list[int], backlogged: set[str]) -> list[outbox.Dirty]:
        async with connection(self.database) as conn:  # NB: one statement, atomic without a BEGIN and a COMMIT.
            return await outbox.pending(
                conn,
                per_consumer=self.per_consumer_scan,
                rows=self.batch_size * self.concurrency,
                reconcile=reconcile,
                backlogged=backlogged,
            )

    async def _rows(self, ids: list[str]) -> dict[str, ResourceRow]:
        async with connection(self.database) as conn:
            return {r.id: r for r in await resources.get_many(conn, ids)}

    def _reconcile(self, event_ids: list[int]) -> None:
        """Have the next sweep mark these events reconciled, at the latest ``MARK_DELAY`` from now."""
        self._unmarked.extend(event_ids)
        if self._mark_timer is None:
            self._mark_timer = asyncio.get_running_loop().call_later(MARK_DELAY, self.wake.set)

    # --- working ---------------------------------------------------------------------------------------------

    def _take(self) -> tuple[_Consumer, list[_Item]] | None:
        """The next consumer (round robin) with ready items that no other worker serves, and its batch."""
        now = time.monotonic()
        for _ in range(len(self._order)):
            name = self._order[0]
            self._order.rotate(-1)
            queue = self._consumers[name]
            if queue.busy:
                continue
            batch = []
            for item in queue.items.values():
                if item.not_before <= now:
                    batch.append(item)
                    if len(batch) >= self.batch_size:
                        break
            if not batch:
                continue
            for item in batch:
                del queue.items[item.resource_id]
                self._inflight.add(item.resource_id)
            queue.busy = True
            return queue, batch
        return None

    def _next_due(self) -> float | None:
        due = [i.not_before for q in self._consumers.values() if not q.busy for i in q.items.values()]
        return max(0.0, min(due) - time.monotonic()) if due else None

    async def _worker(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                self._work.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._next_due()):
                        await self._work.wait()
                continue
            queue, batch = taken
            try:
                outcomes = await self._publish_batch(queue.name, batch)
            except DatabaseUnavailable:
                outcomes = [_Outcome(item, ok=False, reason=UNAVAILABLE) for item in batch]
            except Exception as exc:
                log.warning("dispatch batch for consumer %s failed: %r", queue.name, exc)
                outcomes = [_Outcome(item, ok=False, reason="internal") for item in batch]
            finally:
                queue.busy = False
                for item in batch:
                    self._inflight.discard(item.resource_id)
            for outcome in outcomes:
                if not outcome.ok:
                    self._retry(queue, outcome)
            if self._rescan or (queue.saturated and not queue.items):
                self.wake.set()
            self._update_gauge()
            self._work.set()  # NB: this consumer is free again; an idle worker may take its next batch.

    def _retry(self, queue: _Consumer, outcome: _Outcome) -> None:
        item = outcome.item
        item.attempts += 1
        delay = self._delay(item.attempts)
        item.not_before = time.monotonic() + delay
        metrics.SPEC_PUBLISH_ERRORS.labels(outcome.reason or "publish").inc()
        log.log(
            logging.DEBUG if outcome.reason == UNAVAILABLE else logging.WARNING,
            "publishing resource %s to consumer %s failed (%s, attempt %d); retrying in %.1fs",
            item.resource_id,
            queue.name,
            outcome.reason,
            item.attempts,
            delay,
        )
        existing = queue.items.get(item.resource_id)
        if existing is not None:  # NB: a sweep re-queued it meanwhile; keep one item with all event ids.
            existing.event_ids.update(item.event_ids)
            existing.attempts, existing.not_before = item.attempts, item.not_before
        else:
            queue.items[item.resource_id] = item

    def _delay(self, attempt: int) -> float:
        return self.backoff.delay(attempt)

    async def _publish_batch(self, consumer: str, batch: list[_Item]) -> list[_Outcome]:
        rows = {i.resource_id: i.row for i in batch if i.read and i.row is not None}
        unread = [i.resource_id for i in batch if not i.read]
        if unread:
            rows.update(await guard.finish(self._rows(unread)))
        topic = wire.source_events_topic(self.source_events, source=self.source_id, consumer=consumer)
        sent: list[tuple[_Item, str, asyncio.Future[None] | None]] = []
        outcomes: list[_Outcome] = []
        broken: str | None = None
        for item in batch:
            row = rows.get(item.resource_id)
            if row is None:
                # NB: already hard-deleted (its delete completed): there is nothing left to publish.
                sent.append((item, "none", None))
                continue
            if broken is not None:
                outcomes.append(_Outcome(item, ok=False, reason=broken))
                continue
            try:
                future = await self._publish_row(topic, row)
            except BrokerError as exc:
                # NB: the broker is unreachable for everyone; don't wait out the timeout once per item.
                broken = type(exc).__name__
                outcomes.append(_Outcome(item, ok=False, reason=broken))
                continue
            except (MaestroProtocolException, ValueError) as exc:
                outcomes.append(_Outcome(item, ok=False, reason=type(exc).__name__))
                continue
            sent.append((item, _action(row), future))
        done = [(item, action) for item, action, future in sent if future is None]
        futures = {future: (item, action) for item, action, future in sent if future is not None}
        if futures:
            # NB: one wait for the whole batch. It cancels no publish, neither on its timeout nor when we are
            # cancelled (that raises here); a publish the adapter cancelled when it closed failed and is retried.
            acked, _ = await asyncio.wait(list(futures), timeout=self.publish_timeout)
            for future, (item, action) in futures.items():
                if future not in acked:
                    outcomes.append(_Outcome(item, ok=False, reason="ack_timeout"))
                elif future.cancelled():
                    outcomes.append(_Outcome(item, ok=False, reason="ack_cancelled"))
                elif (error := future.exception()) is not None:
                    outcomes.append(_Outcome(item, ok=False, reason=type(error).__name__))
                else:
                    done.append((item, action))
        if done:
            self._reconcile([e for item, _ in done for e in item.event_ids])
            now = datetime.now(UTC)
            for item, action in done:
                outcomes.append(_Outcome(item, ok=True, action=action))
                if action == "none":
                    continue
                metrics.SPEC_PUBLISHED.labels(action).inc()
                metrics.SPEC_LATENCY.observe(max(0.0, (now - item.first_written).total_seconds()))
                log.debug(
                    "published %s of resource %s (version %d) to consumer %s",
                    action,
                    item.resource_id,
                    rows[item.resource_id].version,
                    consumer,
                )
        return outcomes

    async def _publish_row(self, topic: str, row: ResourceRow) -> asyncio.Future[None]:
        message = wire.spec_message(row, self.publisher, source=self.source_id)
        future: asyncio.Future[None] = await self.publisher.publish(topic, message, timeout=self.publish_timeout)
        return future

    def _update_gauge(self) -> None:
        metrics.QUEUED.set(sum(len(q.items) for q in self._consumers.values()) + len(self._inflight))

    # --- introspection (tests, health) -----------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return sum(len(q.items) for q in self._consumers.values())


def _action(row: ResourceRow) -> str:
    if row.deleted_at is not None:
        return types.DELETE_REQUEST
    return types.CREATE_REQUEST if row.version == 1 else types.UPDATE_REQUEST
