"""Replicas and consumer ownership.

Every replica heartbeats its row in ``server_instances``; a replica is live while its heartbeat is younger than
three intervals (the database's clock decides, so replica clocks may drift). Each consumer is owned by exactly one
live replica, chosen by rendezvous hashing of (replica id, consumer name): when a replica joins or leaves, only the
consumers it gains or loses move, and every replica computes the same owner from the same membership without
talking to the others.

A replica only heartbeats, and only counts itself a member, while it is *eligible*: with a transport, while its
broker link is up. A replica that cannot reach the broker marks itself not ready at once and owns nothing, so the
others take its consumers over at their next refresh instead of leaving them with a replica that cannot deliver.

The owner publishes the consumer's spec events and, with broadcast subscriptions, is the one that stores its
status. When membership changes, a replica learns which consumers it gained (a takeover): their pending events
are still unreconciled in the outbox, so the dispatcher publishes them again, and the status path asks their
agents for a status resync. What a replica owns when it (re)joins is not a takeover: it joins because its broker
link just came up, and the status resync of that link (after :meth:`Registry.fresh`) covers all it owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterable

import databases

from server.dispatch import metrics
from server.errors import DatabaseUnavailable
from server.settings import TransportSettings
from server.store import consumers, instances
from server.store.db import connection, transaction

log = logging.getLogger(__name__)


def owner(consumer: str, members: Iterable[str]) -> str | None:
    """The member that owns ``consumer`` (highest hash of member + consumer), or None without members."""
    best: tuple[bytes, str] | None = None
    for member in members:
        score = hashlib.blake2b(f"{member}\x00{consumer}".encode(), digest_size=8).digest()
        if best is None or score > best[0]:
            best = (score, member)
    return best[1] if best else None


class Registry:
    """This replica's membership: heartbeats, the live set, and what it owns."""

    def __init__(self, db: databases.Database, settings: TransportSettings) -> None:
        self.db = db
        self.id = settings.client_id
        self.interval = settings.heartbeat_interval
        self.members: tuple[str, ...] = ()
        self.registered = asyncio.Event()
        self.changed = asyncio.Event()
        """Set whenever the membership changes; whoever reacts clears it."""
        self._gained: set[str] = set()
        self._departed = False
        self.eligible: Callable[[], bool] | None = None
        """Whether this replica can serve consumers now (set by the transport: its broker link is up)."""
        self._was_eligible: bool | None = None
        self._poke = asyncio.Event()
        self._begun = 0
        """Beats begun; :meth:`fresh` waits for one begun after it was called to succeed."""
        self._done = 0
        self._beaten = asyncio.Condition()

    def poke(self) -> None:
        """Beat now rather than at the next interval (e.g. the broker link just came up)."""
        self._poke.set()

    def owns(self, consumer: str) -> bool:
        # NB: before the first heartbeat the replica owns nothing, so it never publishes for a consumer that a
        # live replica is still serving.
        return owner(consumer, self.members) == self.id

    async def fresh(self) -> None:
        """Beat now and return once a beat begun after this call has succeeded: :meth:`owns` then reflects the
        broker link as it is now. Needs :meth:`run`."""
        wanted = self._begun + 1
        self.poke()
        async with self._beaten:
            await self._beaten.wait_for(lambda: self._done >= wanted)

    def take_gained(self) -> set[str]:
        """Consumers this replica took over from other replicas, while a member itself, since the last call."""
        gained, self._gained = self._gained, set()
        return gained

    def take_departed(self) -> bool:
        """Whether another replica left the live set since the last call."""
        departed, self._departed = self._departed, False
        return departed

    async def beat(self) -> None:
        """One heartbeat (or, while not eligible, a notice that this replica is not ready) and one membership
        refresh."""
        self._begun += 1
        number = self._begun
        eligible = self.eligible is None or self.eligible()
        if self._was_eligible is not None and eligible != self._was_eligible:
            log.warning(
                "replica %s %s", self.id, "can serve consumers again" if eligible else "lost its broker: owns nothing"
            )
        self._was_eligible = eligible
        async with transaction(self.db) as conn:
            if eligible:
                await instances.heartbeat(conn, self.id)
            else:
                await instances.leave(conn, self.id)
        async with connection(self.db) as conn:
            members = tuple(m for m in await instances.live(conn, within=3 * self.interval) if m != self.id)
            if eligible:
                members = tuple(sorted((*members, self.id)))
            if members != self.members:
                names = await consumers.names(conn)
                before = {n for n in names if owner(n, self.members) == self.id}
                after = {n for n in names if owner(n, members) == self.id}
                log.info(
                    "replicas now %s: this one owns %d consumers, gained %d",
                    ",".join(members),
                    len(after),
                    len(after - before),
                )
                self._departed |= bool(set(self.members) - set(members) - {self.id})
                if self.id in self.members:  # NB: see the module docstring: a join is not a takeover.
                    self._gained |= after - before
                self.members = members
                self.changed.set()
                metrics.OWNED_CONSUMERS.set(len(after))
        metrics.LIVE_REPLICAS.set(len(self.members))
        if eligible:
            self.registered.set()
        else:
            self.registered.clear()
        async with self._beaten:
            self._done = max(self._done, number)
            self._beaten.notify_all()

    async def run(self) -> None:
        """Heartbeat every ``interval`` (until cancelled); a failed beat is logged and retried next time."""
        try:
            while True:
                try:
                    await self.beat()
                except DatabaseUnavailable:
                    log.debug("heartbeat of %s skipped: the database is unavailable", self.id)
                except Exception as exc:  # NB: the database may be away for a while; keep beating
                    log.warning("heartbeat of %s failed: %r", self.id, exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._poke.wait()
                self._poke.clear()
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5), transaction(self.db) as conn:
                    await instances.leave(conn, self.id)
