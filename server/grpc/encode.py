"""Status events to the CloudEvents a source receives on ``Subscribe``.

As upstream, the data is the ``ManifestBundleStatus`` plus ``manifestBundle`` (the spec), so a source without a
cache can rebuild the whole work from one event, and the ``metadata`` extension is the work's ObjectMeta as the hub
sends it to agents (:func:`protocol.payloads.work_metadata`; a status log entry does not know when its resource was
created: its ``creationTimestamp`` is ``null``). We add the extension ``maestrocursor``: the position of the event
in the status log, which the source passes back (metadata ``maestro-cursor``) to resume after a disconnect.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from cloudevents.core.v1.event import CloudEvent

from protocol import events, payloads, types
from server.services.watch import StatusEvent
from server.store.rows import ResourceRow

CURSOR_EXTENSION: Final = "maestrocursor"


def _bundle(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    if not spec:
        return None
    data = spec.get("data") or {}
    return {
        "manifests": data.get("manifests") or [],
        "deleteOption": data.get("deleteOption") or {},
        "manifestConfigs": data.get("manifestConfigs") or [],
    }


def _metadata(
    resource_id: str,
    consumer: str,
    version: int,
    spec: dict[str, Any] | None,
    *,
    created_at: datetime | None,
    deleted_at: datetime | None,
) -> str | None:
    if not spec:
        return None
    return payloads.work_metadata(
        spec.get("metadata") or {},
        resource_id=resource_id,
        consumer=consumer,
        version=version,
        created_at=created_at,
        deleted_at=deleted_at,
    )


def _status_event(
    *,
    resource_id: str,
    source: str,
    consumer: str,
    version: int,
    status: dict[str, Any] | None,
    spec: dict[str, Any] | None,
    origin: str,
    cursor: str | None,
    created_at: datetime | None = None,
    deleted_at: datetime | None = None,
) -> CloudEvent:
    status = status or {}
    data: dict[str, Any] = {
        "conditions": status.get("conditions") or [],
        "resourceStatus": status.get("resourceStatus") or [],
    }
    if (bundle := _bundle(spec)) is not None:
        data["manifestBundle"] = bundle
    return events.make_event(
        type=types.manifestbundle_type("status", types.UPDATE_REQUEST),
        source=origin,
        data=data,
        extensions={
            types.EXT_RESOURCE_ID: resource_id,
            types.EXT_RESOURCE_VERSION: version,
            types.EXT_CLUSTER_NAME: consumer,
            types.EXT_ORIGINAL_SOURCE: source,
            types.EXT_SEQUENCE_ID: status.get("SequenceID"),
            types.EXT_STATUS_HASH: status.get("StatusHash"),
            types.EXT_METADATA: _metadata(
                resource_id, consumer, version, spec, created_at=created_at, deleted_at=deleted_at
            ),
            CURSOR_EXTENSION: cursor,
        },
    )


def from_log(event: StatusEvent, *, origin: str) -> CloudEvent:
    """A status log entry (an update, or the final Deleted=True) as a status CloudEvent."""
    return _status_event(
        resource_id=event.resource_id,
        source=event.source,
        consumer=event.consumer_name,
        version=event.version,
        status=event.status,
        spec=event.spec,
        origin=origin,
        cursor=str(event.cursor),
        created_at=event.resource_created_at,
    )


def from_row(row: ResourceRow, *, origin: str) -> CloudEvent:
    """A resource's current status, for a status resync answer."""
    return _status_event(
        resource_id=row.id,
        source=row.source,
        consumer=row.consumer_name,
        version=row.version,
        status=row.status,
        spec=row.payload,
        origin=origin,
        cursor=None,
        created_at=row.created_at,
        deleted_at=row.deleted_at,
    )
