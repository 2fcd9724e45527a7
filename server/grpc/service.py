"""The source-facing gRPC ``CloudEventService`` (upstream's, reference §2): ``Publish`` and ``Subscribe``.

``Publish`` takes spec create/update/delete requests and ``status.resync_request``; errors carry real gRPC status
codes (upstream answers everything with Unknown). ``Subscribe`` streams the status events of one source from the
status log: from "now" by default, or after the cursor a source passes as metadata ``maestro-cursor`` (every
event carries its cursor in the ``maestrocursor`` extension), so a reconnecting source resumes without a relist.
Heartbeats keep idle streams alive as upstream sends them.

With a :class:`~server.grpc.access.Guard`, every call is authenticated before anything else is read (a cursor
included) and authorized for the source it acts for; a spec event may only touch a bundle of its own source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import databases
import grpc
from google.protobuf import empty_pb2

from protocol import events, grpc_codec, payloads, types
from protocol.errors import ProtocolError
from protocol.grpc import cloudevent_pb2 as pb
from protocol.grpc import cloudevent_pb2_grpc as pb_grpc
from server import errors
from server.grpc import access, encode
from server.services import sources, watch
from server.settings import Settings
from server.store import logs, resources
from server.store.db import connection

log = logging.getLogger(__name__)

CURSOR_METADATA = "maestro-cursor"
SUBSCRIPTION_ID_METADATA = "subscription-id"
QUEUE_SIZE = 100


def _code(exc: errors.ServiceError, *, creating: bool) -> grpc.StatusCode:
    if isinstance(exc, errors.DatabaseUnavailable):
        return grpc.StatusCode.UNAVAILABLE  # NB: what gRPC clients retry.
    if isinstance(exc, errors.NotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, errors.Conflict):
        return grpc.StatusCode.ALREADY_EXISTS if creating else grpc.StatusCode.ABORTED
    if isinstance(exc, errors.Forbidden):
        return grpc.StatusCode.PERMISSION_DENIED
    if exc.status == 400:
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


class CloudEventService(pb_grpc.CloudEventServiceServicer):
    def __init__(
        self,
        db: databases.Database,
        feed: watch.StatusFeed,
        settings: Settings,
        *,
        guard: access.Guard | None = None,
    ) -> None:
        self.db = db
        self.feed = feed
        self.origin = settings.transport.source_id
        self.guard = guard or access.Open()
        self.heartbeat_interval = settings.grpc.grpc_heartbeat_interval
        self._subscribers: dict[str, set[asyncio.Queue[pb.CloudEvent]]] = {}

    async def Publish(self, request: pb.PublishRequest, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        # NB: authenticate first, so that a stranger learns nothing, not even from our parse errors.
        identity = await self.guard.identify(context)
        try:
            event = grpc_codec.from_proto(request.event)
            kind = types.event_type(event)
        except ProtocolError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid CloudEvent: {exc}")
            raise  # unreachable: abort raises
        await self.guard.authorize(context, identity, event.get_source())
        try:
            if kind.subresource == "status" and kind.action == types.RESYNC_REQUEST:
                await self._status_resync(event.get_source(), events.data_object(event))
            else:
                await sources.publish(self.db, event, actor=identity.subject if identity.method != "none" else None)
        except ProtocolError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except errors.ServiceError as exc:
            await context.abort(_code(exc, creating=kind.action == types.CREATE_REQUEST), exc.reason)
        except asyncpg.IntegrityConstraintViolationError as exc:
            refused = errors.from_integrity(exc.sqlstate, exc.constraint_name)
            log.warning("Publish %s tripped a database constraint: %s", event.get_type(), exc)
            await context.abort(_code(refused, creating=kind.action == types.CREATE_REQUEST), refused.reason)
        return empty_pb2.Empty()

    async def _status_resync(self, source: str, data: dict[str, Any]) -> None:
        """Send the current status of the source's resources whose hash differs from the source's (all when the
        source sends none) to this source's subscribers on this replica."""
        wanted = {h["resourceID"]: h["statusHash"] for h in payloads.read_status_resync(data)}
        async with connection(self.db) as conn:
            rows = await conn.fetch("SELECT id FROM resources WHERE source = $1 AND status IS NOT NULL", source)
            found = await resources.get_many(conn, [r["id"] for r in rows])
        for row in found:
            current = (row.status or {}).get("StatusHash")
            if wanted and (row.id not in wanted or wanted[row.id] == current):
                continue
            message = grpc_codec.to_proto(encode.from_row(row, origin=self.origin))
            for queue in self._subscribers.get(source, set()):
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(message)

    async def Subscribe(
        self, request: pb.SubscriptionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.CloudEvent]:
        source = request.source
        identity = await self.guard.identify(context)
        if not source:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "SubscriptionRequest.source is required")
        await self.guard.authorize(context, identity, source)
        given = dict(context.invocation_metadata() or ()).get(CURSOR_METADATA)
        try:
            after = logs.Cursor.parse(str(given)) if given else await watch.head(self.db)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return
        subscription = str(uuid.uuid4())
        await context.send_initial_metadata(((SUBSCRIPTION_ID_METADATA, subscription),))
        queue: asyncio.Queue[pb.CloudEvent] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.setdefault(source, set()).add(queue)
        consumer = request.cluster_name or None
        log.info("source %r subscribed (%s) as %s after cursor %s", source, subscription, identity, after)

        async def pump() -> None:
            async for event in watch.follow(self.db, self.feed, after, source=source, consumer=consumer):
                await queue.put(grpc_codec.to_proto(encode.from_log(event, origin=self.origin)))

        async def beat() -> None:
            while True:
                await asyncio.sleep(self.heartbeat_interval)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(grpc_codec.heartbeat())

        tasks = [
            asyncio.create_task(pump(), name=f"subscribe-pump:{subscription}"),
            asyncio.create_task(beat(), name=f"subscribe-heartbeat:{subscription}"),
        ]
        getter: asyncio.Future[pb.CloudEvent] | None = None
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait([getter, tasks[0]], return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    tasks[0].result()  # the pump died: surface its error to the client
                    return
                yield getter.result()
        finally:
            # NB: a client that goes away cancels us inside asyncio.wait; the pending getter must not outlive us.
            if getter is not None:
                getter.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._subscribers.get(source, set()).discard(queue)
            log.info("source %r unsubscribed (%s)", source, subscription)
