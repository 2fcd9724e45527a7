"""Reads the status path needs beyond ``resources``: stored status hashes for a status resync."""

from __future__ import annotations

from server.store.db import Conn


async def hashes(conn: Conn, consumer_name: str) -> list[tuple[str, str | None]]:
    """``(resource id, stored status hash or None)`` for every resource of ``consumer_name``, deleting ones too."""
    rows = await conn.fetch(
        "SELECT id, status->>'StatusHash' AS hash FROM resources WHERE consumer_name = $1 ORDER BY id", consumer_name
    )
    return [(r["id"], r["hash"]) for r in rows]


async def consumers_with_resources(conn: Conn) -> list[str]:
    rows = await conn.fetch("SELECT DISTINCT consumer_name FROM resources ORDER BY consumer_name")
    return [r["consumer_name"] for r in rows]
