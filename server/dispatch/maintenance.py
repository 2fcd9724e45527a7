"""Periodic repairs that make delivery converge when messages or agents go missing.

Every ``interval`` (±25 % jitter), for the consumers this replica owns:

* **Undelivered specs.** A live resource whose agent has not reported its current version for
  ``undelivered_threshold`` seconds is published again (a new spec event at the same version), at most once per
  threshold. Agents drop what they already have, so a spurious re-publish costs one message.
* **Unconfirmed deletes.** A resource being deleted whose agent has not confirmed is sent its delete again every
  ``delete_republish_interval`` seconds — and after ``stale_delete_threshold`` seconds the hub stops waiting and
  completes the delete as an agent's ``Deleted=True`` would (:func:`server.services.status.retire_delete`), with a
  ``StatusDelete`` event whose condition ``Deleted=Unknown`` (reason ``DeleteRetired``) says that no agent
  confirmed. If that agent comes back, its spec resync lists the work, the hub no longer has it, and
  the agent is told to delete it: nothing is orphaned.
* **Retention.** Reconciled spec events and status events older than ``retention`` are dropped, and spec events
  of versions older than a resource's newest ``versions_kept`` (0: no limit), keeping every resource's latest
  fact and latest status (see :func:`server.store.maintenance.prune`).

Each repair is logged with the resource id and counted. A replica repairs only the consumers it ``owns``, up to
``page_size`` resources per kind and round, however many candidates other replicas' consumers have. Each unit of
work is one transaction; cancelling a round (SIGTERM) waits for the current unit only.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

import databases

from server.dispatch import guard, metrics
from server.errors import DatabaseUnavailable
from server.services import status
from server.settings import MaintenanceSettings
from server.store import maintenance
from server.store.db import connection, transaction

log = logging.getLogger(__name__)


class Maintenance:
    def __init__(
        self,
        database: databases.Database,
        settings: MaintenanceSettings,
        *,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        self.database = database
        self.owns = owns or (lambda _: True)
        self.interval = settings.maintenance_interval
        self.undelivered_threshold = settings.undelivered_resource_threshold
        self.delete_republish_interval = settings.delete_republish_interval
        self.stale_delete_threshold = settings.stale_delete_event_threshold
        self.retention = settings.status_event_retention
        self.versions_kept = max(0, settings.event_versions_kept)
        self._pruned_at: float | None = None
        """When the last compaction started (monotonic): the next caps the resources written since."""
        self.page_size = max(1, settings.maintenance_page_size)
        """At most this many resources of this replica's consumers are repaired per kind per round."""

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval * (0.75 + random.random() / 2))
            try:
                await self.once()
            except DatabaseUnavailable:
                log.debug("maintenance round skipped: the database is unavailable")  # NB: logged once elsewhere.
            except Exception as exc:  # NB: a failed round is retried at the next one.
                log.warning("maintenance round failed: %r", exc)

    async def once(self) -> dict[str, int]:
        """One round of repairs.

        Each unit of work (one transaction) runs to its end even if the round is cancelled (see
        :mod:`server.dispatch.guard`), but a cancellation ends the round there: a SIGTERM waits for one unit, not for
        the whole round (which may retire thousands of deletes, one transaction each).
        """
        return {
            "retired": await self.retire_stale_deletes(),
            "deletes_republished": await self.republish_deletes(),
            "undelivered_republished": await self.republish_undelivered(),
            "pruned": await self.prune(),
        }

    async def _owned(
        self, fetch: Callable[[int], Awaitable[list[maintenance.Candidate]]]
    ) -> list[maintenance.Candidate]:
        """Up to ``page_size`` candidates of the consumers this replica owns.

        NB: the store's LIMIT applies before we can filter by owner, so a page filled by other replicas' consumers
        would hide ours round after round. So we read larger pages until ours fill one or the candidates run out
        (one page when this replica owns everything).
        """
        limit = self.page_size
        while True:
            found = await fetch(limit)
            owned = [c for c in found if self.owns(c.consumer_name)]
            if len(owned) >= self.page_size or len(found) < limit:
                return owned[: self.page_size]
            limit *= 4

    async def republish_undelivered(self) -> int:
        due = await guard.finish(self._republish_undelivered())
        for c in due:
            log.warning(
                "resource %s on consumer %s has no status for version %d after %.0fs: publishing it again",
                c.id,
                c.consumer_name,
                c.version,
                self.undelivered_threshold,
            )
        metrics.UNDELIVERED_REPUBLISHED.inc(len(due))
        return len(due)

    async def _republish_undelivered(self) -> list[maintenance.Candidate]:
        async with transaction(self.database) as conn:
            due = await self._owned(
                lambda limit: maintenance.undelivered(conn, older_than=self.undelivered_threshold, limit=limit)
            )
            await maintenance.append_events(
                conn, [(c.id, c.consumer_name, "Create" if c.version == 1 else "Update", c.version) for c in due]
            )
        return due

    async def republish_deletes(self) -> int:
        due = await guard.finish(self._republish_deletes())
        for c in due:
            log.info(
                "delete of resource %s on consumer %s not confirmed yet: publishing it again", c.id, c.consumer_name
            )
        metrics.DELETES_REPUBLISHED.inc(len(due))
        return len(due)

    async def _republish_deletes(self) -> list[maintenance.Candidate]:
        async with transaction(self.database) as conn:
            due = await self._owned(
                lambda limit: maintenance.unconfirmed_deletes(
                    conn, quiet_for=self.delete_republish_interval, limit=limit
                )
            )
            await maintenance.append_events(conn, [(c.id, c.consumer_name, "Delete", c.version) for c in due])
        return due

    async def retire_stale_deletes(self) -> int:
        due = await guard.finish(self._stale_deletes())
        retired = 0
        try:
            for c in due:
                if not await guard.finish(
                    status.retire_delete(self.database, c.id, waited=self.stale_delete_threshold)
                ):
                    continue
                retired += 1
                log.warning(
                    "delete of resource %s on consumer %s retired: no agent confirmed it within %.0fs",
                    c.id,
                    c.consumer_name,
                    self.stale_delete_threshold,
                )
        finally:
            metrics.DELETES_RETIRED.inc(retired)
        return retired

    async def _stale_deletes(self) -> list[maintenance.Candidate]:
        async with connection(self.database) as conn:
            return await self._owned(
                lambda limit: maintenance.stale_deletes(conn, older_than=self.stale_delete_threshold, limit=limit)
            )

    async def prune(self) -> int:
        return await guard.finish(self._prune())

    async def _prune(self) -> int:
        started = time.monotonic()
        # NB: one interval of slack for a write whose transaction began before the previous round.
        within = None if self._pruned_at is None else started - self._pruned_at + self.interval
        async with transaction(self.database) as conn:
            dropped = await maintenance.prune(
                conn, older_than=self.retention, versions_kept=self.versions_kept, written_within=within
            )
        self._pruned_at = started
        return sum(dropped.values())
