"""The two append-only event logs, ``events`` (spec) and ``status_events`` (status), and their cursor reader.

Appending writes the row and queues ``pg_notify`` in the caller's transaction, so the notification is delivered
exactly when the row becomes visible. Readers page by ``(xid, id)`` and only read rows whose transaction id is
below ``pg_snapshot_xmin(pg_current_snapshot())``: every transaction below that horizon has finished, and every
transaction that has not finished yet — however early it took its row id — will sort after the cursor. So a
reader never skips a row that commits late. (Ordering by ``id`` alone would: ids are handed out before commit.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal

import asyncpg

from server.store.db import Conn

SpecEventType = Literal["Create", "Update", "Delete", "Deleted", "Snapshot"]
"""Create/Update/Delete: spec changes the dispatcher publishes; Deleted: the delete completed; Snapshot: the row
as the payload migration found it. Each carries the resource as of that event (:func:`fact`); maintenance's
re-publish nudges carry no payload."""
StatusEventType = Literal["StatusUpdate", "StatusDelete"]
Log = Literal["events", "status_events"]

_CURSOR: Final = re.compile(r"([0-9]{1,20})-([0-9]{1,19})")

SPEC_CHANNEL = "events"
STATUS_CHANNEL = "status_events"


@dataclass(frozen=True, order=True)
class Cursor:
    """A position in a log: everything at or before ``(xid, id)`` has been read."""

    xid: int
    id: int

    def __str__(self) -> str:
        return f"{self.xid}-{self.id}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """The cursor ``str()`` printed; ValueError for anything else (clients send these back to us)."""
        match = _CURSOR.fullmatch(text)
        # NB: ASCII digits only (str.isdigit() takes '²' and other scripts), and within xid8 and bigint.
        if match is None or int(match[1]) >= 2**64 or int(match[2]) >= 2**63:
            raise ValueError(f"invalid cursor {text!r}: expected '<xid>-<id>' as returned by the server")
        return cls(int(match[1]), int(match[2]))


START = Cursor(0, 0)


def fact(row: str, actor: str) -> str:
    """SQL for the payload of a spec event: the resource ``row`` (a table alias) as of this event, written by
    ``actor`` (a SQL expression). Its version and consumer are the event's own columns. See
    migrations/20261207_12_event_payloads.sql, which writes the same shape."""
    return (
        f"jsonb_build_object('name', {row}.name, 'source', {row}.source, 'type', {row}.type,"
        f" 'created_at', {row}.created_at, 'updated_at', {row}.updated_at, 'deleted_at', {row}.deleted_at,"
        f" 'actor', {actor}::text, 'spec', {row}.payload)"
    )


async def append_status_event(
    conn: Conn,
    *,
    resource_id: str,
    resource_source: str,
    resource_type: str,
    consumer_name: str,
    event_type: StatusEventType,
    version: int,
    status: dict[str, Any] | None,
    payload: dict[str, Any] | None = None,
) -> int:
    """Append a status event and notify the watchers (payload: the row id)."""
    return int(
        await conn.fetchval(
            "WITH e AS (INSERT INTO status_events (resource_id, resource_source, resource_type, consumer_name,"
            " status_event_type, version, status, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id)"
            " SELECT e.id FROM e, LATERAL pg_notify('status_events', e.id::text) AS n",
            resource_id,
            resource_source,
            resource_type,
            consumer_name,
            event_type,
            version,
            status,
            payload,
        )
    )


async def head(conn: Conn) -> Cursor:
    """A cursor after everything committed so far (and before everything still in flight)."""
    xmin = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
    return Cursor(int(xmin) - 1, 2**62)


async def read(
    conn: Conn,
    log: Log,
    after: Cursor,
    *,
    limit: int = 500,
    where: str = "TRUE",
    params: tuple[Any, ...] = (),
) -> tuple[list[asyncpg.Record], Cursor]:
    """Rows after ``after`` in commit-safe order, and the cursor to pass next time.

    ``where``/``params`` add a filter written by the caller (a constant SQL fragment using ``$4``, ``$5``…).
    When the page is not full the cursor jumps to the visibility horizon of the same snapshot, so filtered-out
    rows are not scanned again.
    """
    found = await conn.fetch(
        "WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)"
        " SELECT l.*, l.xid::text::bigint AS xid_int, h.xmin::text::bigint AS horizon FROM h LEFT JOIN LATERAL"
        f" (SELECT * FROM {log} WHERE (xid, id) > ($1::text::xid8, $2) AND xid < h.xmin AND ({where})"
        " ORDER BY xid, id LIMIT $3) l ON true",
        str(after.xid),
        after.id,
        limit,
        *params,
    )
    rows = [r for r in found if r["id"] is not None]
    cursor = Cursor(rows[-1]["xid_int"], rows[-1]["id"]) if rows else after
    if len(rows) < limit:
        cursor = max(cursor, Cursor(int(found[0]["horizon"]) - 1, 2**62))
    return rows, cursor
