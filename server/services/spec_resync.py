"""What an agent that (re)connected is owed: the use case behind a ``spec.resync_request``.

The agent lists the ``(resource id, version)`` pairs it holds. It is owed the current spec of every resource of
its consumer it lacks or holds at an older version, the delete of every resource being deleted, and a delete for
every id the hub does not know — also when the consumer has no resources at all (upstream answers nothing then).
The request is refused (:class:`server.services.status.Rejected`) unless its ``clustername`` is the consumer whose
topic it arrived on and its ``originalsource`` is ours or empty (:func:`server.services.status.check_sender`).
"""

from __future__ import annotations

from dataclasses import dataclass

import databases

from server.services import status
from server.store import resources
from server.store.db import connection
from server.store.rows import ResourceRow


@dataclass(frozen=True)
class Request:
    consumer: str
    """The consumer whose topic it arrived on."""
    cluster_name: str
    original_source: str
    versions: dict[str, int]
    """What the agent holds: resource id → version."""


@dataclass(frozen=True)
class Owed:
    rows: list[ResourceRow]
    """Resources to send as they are now: a spec, or a delete for those being deleted."""
    unknown: dict[str, int]
    """Ids the agent holds that the hub does not know (→ the version the agent has): to be deleted."""
    known: int
    """How many resources the consumer has."""


async def owed(database: databases.Database, request: Request, *, source_id: str) -> Owed:
    status.check_sender(
        request.consumer, request.cluster_name, request.original_source, source_id=source_id, unnamed_ok=True
    )
    async with connection(database) as conn:
        rows = await resources.for_consumer(conn, request.consumer)
    has, known = request.versions, {r.id for r in rows}
    return Owed(
        rows=[r for r in rows if r.deleted_at is not None or r.id not in has or r.version > has[r.id]],
        unknown={rid: version for rid, version in has.items() if rid not in known},
        known=len(rows),
    )
