"""Status use cases: accepting an agent's status, and completing a two-phase delete.

Accepting a status (:func:`accept`). The status is refused, with a :class:`Rejected` whose ``reason`` says why,
unless

* its ``clustername`` is the consumer whose topic it arrived on (consumer A cannot speak for consumer B) and its
  ``originalsource`` is our source id (both checked before the database is asked);
* the resource exists and belongs to that consumer;
* ``resourceversion`` equals the stored version, ``sequenceid`` is newer than the stored one, and the status
  differs from the stored one (its hash, for the same version): an identical status is not stored twice.

An accepted status is one transaction under the row lock: ``resources.status`` + a ``StatusUpdate`` event + its
NOTIFY.

Completing a delete. A ``Deleted=True`` status of a resource being deleted completes its two-phase delete (the
version and sequence id are not checked: an update may still have been on its way when the agent removed
everything, and the delete is what the hub asked for). Maintenance completes a delete no agent confirmed in time
(:func:`retire_delete`) the same way, with a ``Deleted=Unknown`` status of its own. Either way it is one
transaction, one statement (:func:`server.store.status.complete_delete`): the row goes, a ``StatusDelete`` event
carries the status and the spec, the ``Deleted`` spec fact records who completed it (``agent:<consumer>`` or
``hub:delete-retired``), and the resource's pending spec events are marked reconciled (there is nothing left to
publish).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import databases

from protocol import sequence, statushash
from protocol.errors import ProtocolError
from server.store import resources
from server.store import status as store
from server.store.db import transaction

log = logging.getLogger(__name__)

Outcome = Literal["update", "delete"]
"""What an accepted status did: stored a status, or completed a delete."""

RETIRED_BY: Final = "hub:delete-retired"
"""The actor of a delete the hub completed because no agent confirmed it."""


class Rejected(Exception):
    """A status (or any agent message) the hub refuses; ``reason`` is the metric label (a small fixed set)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class StatusReport:
    """A decoded status event, as the agent sent it (not yet checked against the database)."""

    consumer: str
    """The consumer whose topic it arrived on."""
    resource_id: str
    version: int
    sequence_id: str
    status_hash: str
    conditions: list[dict[str, Any]]
    resource_status: list[dict[str, Any]]
    cluster_name: str
    """The consumer the event says it comes from (``clustername``)."""
    original_source: str
    """The source the event says the resource is of (``originalsource``)."""

    @property
    def deleted(self) -> bool:
        return any(c.get("type") == "Deleted" and c.get("status") == "True" for c in self.conditions)

    def stored(self) -> dict[str, Any]:
        """The status as ``resources.status`` and the status log keep it."""
        return {
            "ObservedVersion": self.version,
            "SequenceID": self.sequence_id,
            "StatusHash": self.status_hash,
            "conditions": self.conditions,
            "resourceStatus": self.resource_status,
        }


def check_sender(
    consumer: str, cluster_name: str, original_source: str, *, source_id: str, unnamed_ok: bool = False
) -> None:
    """Refuse an agent event whose ``clustername`` is not ``consumer``, the consumer whose topic it arrived on
    (consumer A cannot speak for consumer B), or whose ``originalsource`` is not ``source_id`` (``unnamed_ok``: or
    empty, as agents send a spec resync request)."""
    if cluster_name != consumer:
        raise Rejected("consumer_mismatch", f"clustername {cluster_name!r} on the topic of consumer {consumer!r}")
    if original_source != source_id and not (unnamed_ok and original_source == ""):
        raise Rejected("foreign_source", f"originalsource {original_source!r} is not {source_id!r}")


async def accept(database: databases.Database, report: StatusReport, *, source_id: str) -> Outcome:
    """Store ``report`` or complete the delete it confirms; raises :class:`Rejected` (nothing changed) or
    ``DatabaseUnavailable``."""
    check_sender(report.consumer, report.cluster_name, report.original_source, source_id=source_id)
    async with transaction(database) as conn:
        target = await store.lock(conn, report.resource_id)
        if target is None:
            raise Rejected("unknown_resource", f"resource {report.resource_id} does not exist")
        if target.consumer_name != report.consumer:
            raise Rejected("wrong_consumer", f"resource {target.id} belongs to another consumer")
        if report.deleted and target.deleting:
            await store.complete_delete(conn, target.id, report.stored(), actor=None)
            log.debug(
                "resource %s deleted on consumer %s (version %d)", target.id, target.consumer_name, target.version
            )
            return "delete"
        if report.version != target.version:
            raise Rejected(
                "stale_version", f"resource {target.id}: status of version {report.version}, not {target.version}"
            )
        try:
            newer = sequence.is_newer(report.sequence_id, target.sequence_id)
        except ProtocolError:
            newer = True  # NB: an unreadable stored id must not wedge the resource forever.
        if not newer:
            raise Rejected("stale_sequence", f"resource {target.id}: sequence id {report.sequence_id} is not newer")
        if target.status_hash == report.status_hash and target.observed_version == report.version:
            raise Rejected("unchanged", f"resource {target.id}: status unchanged")
        await store.store(conn, target, report.stored())
    log.debug(
        "status of resource %s on consumer %s (version %d) stored", target.id, target.consumer_name, target.version
    )
    return "update"


async def retire_delete(database: databases.Database, resource_id: str, *, waited: float) -> bool:
    """Complete the delete of ``resource_id`` that no agent confirmed within ``waited`` seconds; false if the row
    is gone or not being deleted."""
    async with transaction(database) as conn:
        row = await resources.get(conn, resource_id, lock=True)
        if row is None or row.deleted_at is None:
            return False
        await store.complete_delete(conn, row.id, retired_status(row.status, waited=waited), actor=RETIRED_BY)
    return True


def retired_status(previous: dict[str, Any] | None, *, waited: float, now: datetime | None = None) -> dict[str, Any]:
    """The status a retired delete ends with: what the agent last reported (version, sequence id, manifests'
    statuses), its conditions replaced by ``Deleted=Unknown`` (reason ``DeleteRetired``), and the hash of that."""
    previous = previous or {}
    when = (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    conditions = [
        {
            "type": "Deleted",
            "status": "Unknown",
            "reason": "DeleteRetired",
            "lastTransitionTime": when,
            "message": f"no agent confirmed the delete within {waited:.0f}s; the hub stopped waiting",
        }
    ]
    resource_status = previous.get("resourceStatus") or []
    return {
        **{k: previous[k] for k in ("ObservedVersion", "SequenceID") if k in previous},
        "StatusHash": statushash.status_hash({"conditions": conditions, "resourceStatus": resource_status}),
        "conditions": conditions,
        "resourceStatus": resource_status,
    }
