"""Status resync: whenever the hub's MQTT link is (re)established, ask every agent for what it has that differs.

Statuses published while the hub was away may be lost (a clean session, a broker restart without persistence),
so on each link the hub sends each consumer with resources a ``status.resync_request`` listing the stored status
hash of every resource; the agent answers with the statuses whose hash differs. Batches keep each event under the
broker's packet limit. A resource without a status gets the empty-status hash, so an agent that has reported
nothing yet is not asked to re-send nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Callable
from typing import Any

import databases

from protocol import events, resync, statushash, types
from server.dispatch import guard, metrics, wire
from server.store import status
from server.store.db import connection

log = logging.getLogger(__name__)


async def status_resync(
    database: databases.Database,
    publisher: wire.Publisher,
    *,
    source_id: str,
    source_events: str,
    consumers: list[str] | None = None,
    publish_timeout: float = 30.0,
    max_bytes: int = resync.DEFAULT_MAX_BYTES,
) -> int:
    """Send ``status.resync_request`` to ``consumers`` (default: every consumer with resources); returns #events."""
    names, hashes = await guard.finish(_hashes(database, consumers))
    sent = 0
    for name in names:
        pairs = [(rid, h or statushash.EMPTY_HASH) for rid, h in hashes[name]]
        topic = wire.source_events_topic(source_events, source=source_id, consumer=name)
        for data in resync.status_resync_payloads(pairs, max_bytes=max_bytes):
            event = events.make_event(
                type=types.manifestbundle_type("status", types.RESYNC_REQUEST),
                source=source_id,
                data=dict(data),
                extensions={types.EXT_CLUSTER_NAME: name},
            )
            await publisher.publish(topic, wire.encode(event, publisher), timeout=publish_timeout)
            sent += 1
    metrics.RESYNC_SENT.labels("status").inc(sent)
    log.info("status resync requested from %d consumers (%d events)", len(names), sent)
    return sent


async def _hashes(
    database: databases.Database, consumers: list[str] | None
) -> tuple[list[str], dict[str, list[tuple[str, str | None]]]]:
    async with connection(database) as conn:
        names = consumers if consumers is not None else await status.consumers_with_resources(conn)
        return names, {name: await status.hashes(conn, name) for name in names}


async def on_connections(
    connections: AsyncIterable[Any],
    *,
    database: databases.Database,
    publisher: wire.Publisher,
    source_id: str,
    source_events: str,
    owns: Callable[[str], bool] | None = None,
    max_bytes: int = resync.DEFAULT_MAX_BYTES,
) -> None:
    """Run :func:`status_resync` on every item of ``connections`` (``Broker.connections()``) for the consumers
    this replica owns (all without ``owns``); never raises."""
    async for link in connections:
        try:
            names = None
            if owns is not None:
                async with connection(database) as conn:
                    names = [n for n in await status.consumers_with_resources(conn) if owns(n)]
            await status_resync(
                database,
                publisher,
                source_id=source_id,
                source_events=source_events,
                consumers=names,
                max_bytes=max_bytes,
            )
        except Exception as exc:
            log.warning("status resync after link %s failed: %r", getattr(link, "generation", "?"), exc)
