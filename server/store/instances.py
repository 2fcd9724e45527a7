"""SQL for ``server_instances``: the replicas of the hub and their heartbeats."""

from __future__ import annotations

from server.store.db import Conn


async def heartbeat(conn: Conn, instance_id: str) -> None:
    await conn.execute(
        "INSERT INTO server_instances (id, last_heartbeat, ready) VALUES ($1, now(), true)"
        " ON CONFLICT (id) DO UPDATE SET last_heartbeat = now(), updated_at = now(), ready = true",
        instance_id,
    )


async def live(conn: Conn, *, within: float) -> list[str]:
    """Ids of the replicas that heartbeated in the last ``within`` seconds (by the database's clock)."""
    rows = await conn.fetch(
        "SELECT id FROM server_instances WHERE ready AND last_heartbeat > now() - make_interval(secs => $1)"
        " ORDER BY id",
        within,
    )
    return [r["id"] for r in rows]


async def leave(conn: Conn, instance_id: str) -> None:
    """A clean shutdown: the others take this replica's consumers over at their next refresh."""
    await conn.execute("UPDATE server_instances SET ready = false, updated_at = now() WHERE id = $1", instance_id)
