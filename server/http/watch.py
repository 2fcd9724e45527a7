"""``GET /resource-bundles?watch=true``: a live stream of status changes, resumable by cursor.

Each line (``application/x-ndjson``, or server-sent events when the client accepts ``text/event-stream``) is
``{"type": "StatusUpdate"|"StatusDelete", "cursor": "<cursor>", "object": <ResourceBundle>}``. A client that
reconnects with ``cursor=<last cursor seen>`` gets everything after it and nothing twice, without relisting.
Without a cursor the stream starts at "now". Filters: ``consumer_name``, ``source``. Idle streams get a keepalive
every 15 s (an empty line, or an SSE comment) so proxies keep them open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from server.errors import BadRequest
from server.http import presenters, state
from server.services import watch
from server.store import logs

KEEPALIVE_SECONDS = 15.0


def _line(event: watch.StatusEvent) -> dict[str, Any]:
    return {"type": event.type, "cursor": str(event.cursor), "object": presenters.status_event(event)}


async def _with_keepalive(items: AsyncIterator[str], keepalive: str) -> AsyncIterator[str]:
    queue: asyncio.Queue[str] = asyncio.Queue(100)

    async def pump() -> None:
        async for item in items:
            await queue.put(item)

    task = asyncio.create_task(pump(), name="watch-pump")
    try:
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE_SECONDS):
                    item = await queue.get()
            except TimeoutError:
                if task.done():
                    task.result()
                    return
                item = keepalive
            # NB: outside the timeout. The response sends the line in this task, so a slow reader would otherwise
            # be cancelled by the keepalive timer while its socket drains.
            yield item
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def watch_bundles(request: Request) -> Response:
    raw = request.query_params.get("cursor")
    try:
        after = logs.Cursor.parse(raw) if raw else None
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    db = state.database(request)
    after = after or await watch.head(db)
    feed = state.feed(request)
    sse = "text/event-stream" in request.headers.get("accept", "")
    follow = watch.follow(
        db,
        feed,
        after,
        source=request.query_params.get("source") or None,
        consumer=request.query_params.get("consumer_name") or None,
    )

    async def lines() -> AsyncIterator[str]:
        async for event in follow:
            body = json.dumps(_line(event), separators=(",", ":"))
            yield f"id: {event.cursor}\ndata: {body}\n\n" if sse else body + "\n"

    media = "text/event-stream" if sse else "application/x-ndjson"
    return StreamingResponse(
        _with_keepalive(lines(), ": keepalive\n\n" if sse else "\n"),
        media_type=media,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
