"""Resource rows to spec CloudEvents, as agents expect them (``reference/maestro.md`` §3).

A live row becomes ``spec.create_request`` (version 1) or ``spec.update_request``; a row with ``deleted_at``
becomes ``spec.delete_request`` carrying ``deletiontimestamp`` and no data (as sdk-go's source codec writes a
deleting work), and is never sent as a create or update. The data of the others is the stored ManifestBundle. The
attributes are those of sdk-go's event builder (``originalsource`` empty on a source's events) plus the
``metadata`` extension: the work's whole ObjectMeta (:func:`protocol.payloads.work_metadata`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from cloudevents.core.v1.event import CloudEvent

from protocol import cloudevents_mqtt, events, payloads, topics, types
from protocol.cloudevents_mqtt import MQTTMessage
from server.store.rows import ResourceRow


class Publisher(Protocol):
    """The part of :class:`protocol.mqtt.Broker` the dispatcher needs (a seam for tests)."""

    @property
    def binary_mode(self) -> bool: ...

    async def publish(
        self, topic: str, message: MQTTMessage, *, qos: int | None = None, timeout: float | None = None
    ) -> Any: ...


def bundle(row: ResourceRow) -> dict[str, Any]:
    data = row.payload.get("data") or {}
    return {
        "manifests": data.get("manifests") or [],
        "deleteOption": data.get("deleteOption") or {},
        "manifestConfigs": data.get("manifestConfigs") or [],
    }


def metadata(row: ResourceRow) -> str:
    return payloads.work_metadata(
        row.payload.get("metadata") or {},
        resource_id=row.id,
        consumer=row.consumer_name,
        version=row.version,
        created_at=row.created_at,
        deleted_at=row.deleted_at,
    )


def _spec_type(row: ResourceRow, *, resync: bool) -> str:
    if resync:
        action = types.RESYNC_RESPONSE
    elif row.deleted_at is not None:
        action = types.DELETE_REQUEST
    else:
        action = types.CREATE_REQUEST if row.version == 1 else types.UPDATE_REQUEST
    return types.manifestbundle_type("spec", action)


def spec_event(
    row: ResourceRow, *, source: str, resync: bool = False, id: str | None = None, time: datetime | None = None
) -> CloudEvent:
    """The event that brings an agent to this row's current state (``id`` and ``time``: a new UUID and now)."""
    deleting = row.deleted_at is not None
    return events.make_event(
        type=_spec_type(row, resync=resync),
        source=source,
        id=id,
        time=time,
        data=None if deleting else bundle(row),
        extensions={
            types.EXT_CLUSTER_NAME: row.consumer_name,
            types.EXT_ORIGINAL_SOURCE: "",
            types.EXT_RESOURCE_ID: row.id,
            types.EXT_RESOURCE_VERSION: row.version,
            types.EXT_DELETION_TIMESTAMP: row.deleted_at,
            types.EXT_METADATA: metadata(row),
        },
    )


def delete_marker(resource_id: str, *, consumer: str, source: str, version: int = 0) -> CloudEvent:
    """A resync answer for a resource the agent has (at ``version``) but the hub does not: remove it."""
    return events.make_event(
        type=types.manifestbundle_type("spec", types.RESYNC_RESPONSE),
        source=source,
        data=None,
        extensions={
            types.EXT_CLUSTER_NAME: consumer,
            types.EXT_ORIGINAL_SOURCE: "",
            types.EXT_RESOURCE_ID: resource_id,
            types.EXT_RESOURCE_VERSION: version,
            types.EXT_DELETION_TIMESTAMP: datetime.now(UTC),
        },
    )


def encode(event: CloudEvent, publisher: Publisher) -> MQTTMessage:
    return cloudevents_mqtt.encode(event, binary=publisher.binary_mode)


def spec_message(
    row: ResourceRow, publisher: Publisher, *, source: str, id: str | None = None, time: datetime | None = None
) -> MQTTMessage:
    """``encode(spec_event(row, source=source), publisher)``, byte for byte, for the dispatcher's every publish.

    In binary mode (MQTT 5) the message is written directly: the user properties in the order and spelling
    :func:`protocol.cloudevents_mqtt.to_binary` gives the event's attributes, without building and validating a
    CloudEvent first (every value here is a string, an int or a time, which the SDK accepts). ``id`` and ``time``
    default to a new UUID and now, as an event's do.
    """
    if not publisher.binary_mode:
        return encode(spec_event(row, source=source, id=id, time=time), publisher)
    prefix = cloudevents_mqtt.CE_PREFIX
    properties = [
        (prefix + "specversion", types.SPECVERSION),
        (prefix + "id", id or str(uuid.uuid4())),
        (prefix + "source", source),
        (prefix + "type", _spec_type(row, resync=False)),
        (prefix + "time", types.format_timestamp(time or datetime.now(UTC))),
        (prefix + types.EXT_CLUSTER_NAME, row.consumer_name),
        (prefix + types.EXT_ORIGINAL_SOURCE, ""),
        (prefix + types.EXT_RESOURCE_ID, row.id),
        (prefix + types.EXT_RESOURCE_VERSION, str(row.version)),
    ]
    if row.deleted_at is not None:
        properties.append((prefix + types.EXT_DELETION_TIMESTAMP, types.format_timestamp(row.deleted_at)))
        payload = b""
    else:
        payload = types.to_json(bundle(row)).encode("utf-8")
    properties.append((prefix + types.EXT_METADATA, metadata(row)))
    return MQTTMessage(payload=payload, content_type=types.JSON_CONTENT_TYPE, user_properties=tuple(properties))


def source_events_topic(pattern: str, *, source: str, consumer: str) -> str:
    """The concrete topic for ``consumer`` from the configured ``topics.sourceEvents`` pattern."""
    return topics.fill(pattern, source=source, consumer=consumer)
