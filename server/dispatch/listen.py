"""A dedicated LISTEN connection that owns its reconnects and turns notifications into an ``asyncio.Event``.

Pooled connections are the wrong place for LISTEN (asyncpg warns when one goes back to the pool with a
listener), so this opens its own. A notification only says "look again": the reader re-reads the table. On every
(re)connect the event is set, because notifications sent while we were away are gone; while the connection is up
none is lost, so a reader told so (``on_state``) need not poll, and one that polls while it is down loses latency,
never correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from server.settings import DatabaseSettings
from server.store import availability

log = logging.getLogger(__name__)


async def listen(
    dsn: str,
    channel: str,
    wake: asyncio.Event,
    settings: DatabaseSettings,
    *,
    on_state: Callable[[bool], None] | None = None,
) -> None:
    """Run forever (until cancelled): LISTEN on ``channel`` and set ``wake`` on every notification.

    ``on_state(True)`` once listening, ``on_state(False)`` when that ends: while listening, a reader needs no poll.
    """
    backoff = settings.listen_backoff
    ping_interval = settings.listen_ping_interval
    attempt = 0
    while True:
        conn: asyncpg.Connection | None = None
        listening = False
        try:
            conn = await asyncpg.connect(dsn, timeout=10)
            lost = asyncio.Event()

            def on_notify(*_: Any) -> None:
                wake.set()

            def on_lost(*_: Any, lost: asyncio.Event = lost) -> None:
                lost.set()

            conn.add_termination_listener(on_lost)
            await conn.add_listener(channel, on_notify)
            log.debug("listening on %r", channel)
            attempt = 0
            listening = True
            if on_state is not None:
                on_state(True)
            wake.set()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(ping_interval):
                        await lost.wait()
                if not lost.is_set():
                    async with asyncio.timeout(ping_interval):
                        await conn.fetchval("SELECT 1")
            raise ConnectionError("LISTEN connection closed")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            attempt += 1
            delay = backoff.delay(attempt)
            # NB: an outage is logged once, by server.store.availability (the pool sees it too).
            level = logging.DEBUG if availability.unavailable(exc) else logging.WARNING
            log.log(level, "LISTEN %r failed (%r); reconnecting in %.1fs (attempt %d)", channel, exc, delay, attempt)
            await asyncio.sleep(delay)
        finally:
            if listening and on_state is not None:
                on_state(False)
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 5)
