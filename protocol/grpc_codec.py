"""CloudEvent ↔ protobuf ``io.cloudevents.v1.CloudEvent``, encoded the way sdk-go's gRPC protocol does it.

sdk-go does not use the stock CloudEvents protobuf mapping: ``id``, ``source``, ``spec_version`` and ``type`` are
fields; ``time``, ``subject``, ``dataschema`` and every extension go into ``attributes`` under ``ce-<name>``;
``datacontenttype`` goes under the bare key ``contenttype``. Values are typed: ``resourceversion`` is a
``ce_integer`` (int32), ``time`` and ``deletiontimestamp`` are ``ce_timestamp``, strings are ``ce_string``.
JSON data travels as ``binary_data``. Readers also take unprefixed keys and ``text_data``, since other CloudEvents
gRPC clients write those. Every malformed input raises :class:`ProtocolError`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from cloudevents.core.v1.event import CloudEvent
from google.protobuf.message import DecodeError

from protocol import events, types
from protocol.errors import ProtocolError
from protocol.grpc import cloudevent_pb2 as pb

CE_PREFIX: Final = "ce-"
CONTENT_TYPE_KEY: Final = "contenttype"
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
_FIELDS: Final = frozenset({"id", "source", "specversion", "type"})


def to_proto(event: CloudEvent) -> pb.CloudEvent:
    """Encode ``event`` as sdk-go writes it."""
    attributes = event.get_attributes()
    message = pb.CloudEvent(
        id=attributes["id"],
        source=attributes["source"],
        spec_version=attributes["specversion"],
        type=attributes["type"],
    )
    for name, value in attributes.items():
        if name in _FIELDS or value is None:
            continue
        if name == "datacontenttype":
            message.attributes[CONTENT_TYPE_KEY].ce_string = str(value)
            continue
        _set_value(message.attributes[CE_PREFIX + name], name, value)
    data = event.get_data()
    if isinstance(data, bytes | bytearray):
        message.binary_data = bytes(data)
    elif isinstance(data, str):
        message.binary_data = data.encode("utf-8")
    elif data is not None:
        message.binary_data = types.to_json(data).encode("utf-8")
    return message


def from_proto(message: pb.CloudEvent) -> CloudEvent:
    """Decode a protobuf CloudEvent (sdk-go's layout, or unprefixed keys and ``text_data``)."""
    attributes: dict[str, Any] = {
        "specversion": message.spec_version,
        "id": message.id,
        "source": message.source,
        "type": message.type,
    }
    bare: dict[str, Any] = {}
    for key, value in message.attributes.items():
        name = key.lower()
        if name == CONTENT_TYPE_KEY:
            name = "datacontenttype"
        if name.startswith(CE_PREFIX):
            attributes.setdefault(name[len(CE_PREFIX) :], _get_value(key, value))
        else:
            bare[name] = _get_value(key, value)
    for name, value in bare.items():
        if name not in _FIELDS:
            attributes.setdefault(name, value)
    content_type = attributes.get("datacontenttype")
    if not isinstance(content_type, str | None):
        raise ProtocolError("datacontenttype must be a string")
    return events.from_attributes(attributes, _read_data(message, content_type))


def from_bytes(raw: bytes) -> CloudEvent:
    """Parse serialized protobuf bytes, then decode."""
    message = pb.CloudEvent()
    try:
        message.ParseFromString(raw)
    except (DecodeError, ValueError) as exc:
        raise ProtocolError(f"not a protobuf CloudEvent: {exc}") from None
    return from_proto(message)


def heartbeat() -> pb.CloudEvent:
    """The heartbeat the hub sends on Subscribe streams: id, specversion and type only, as upstream."""
    return pb.CloudEvent(id=str(uuid.uuid4()), spec_version=types.SPECVERSION, type=types.HEARTBEAT_TYPE)


def is_heartbeat(message: pb.CloudEvent) -> bool:
    """Heartbeats have no source, so check before :func:`from_proto`, which would refuse one."""
    return message.type == types.HEARTBEAT_TYPE


def _set_value(target: pb.CloudEventAttributeValue, name: str, value: object) -> None:
    if name in types.INTEGER_EXTENSIONS:
        value = types.parse_int(name, value)
    elif name == "time" or name in types.TIMESTAMP_EXTENSIONS:
        value = types.parse_timestamp(name, value)
    if isinstance(value, bool):
        target.ce_boolean = value
    elif isinstance(value, int):
        if not _INT32_MIN <= value <= _INT32_MAX:
            raise ProtocolError(f"{name}={value} does not fit the int32 of ce_integer")
        target.ce_integer = value
    elif isinstance(value, datetime):
        target.ce_timestamp.FromDatetime(value.astimezone(UTC))
    elif isinstance(value, bytes):
        target.ce_bytes = value
    elif isinstance(value, str):
        if name == "dataschema":
            target.ce_uri = value
        else:
            target.ce_string = value
    elif isinstance(value, Mapping | list):
        target.ce_string = json.dumps(value, separators=(",", ":"), sort_keys=True)
    else:
        raise ProtocolError(f"attribute {name!r} has unsupported type {type(value).__name__}")


def _get_value(key: str, value: pb.CloudEventAttributeValue) -> object:
    kind = value.WhichOneof("attr")
    if kind is None:
        raise ProtocolError(f"attribute {key!r} has no value")
    if kind == "ce_timestamp":
        try:
            return value.ce_timestamp.ToDatetime(tzinfo=UTC)
        except (ValueError, OverflowError) as exc:
            raise ProtocolError(f"attribute {key!r} is not a valid timestamp: {exc}") from None
    if kind == "ce_bytes":
        return value.ce_bytes
    result: object = getattr(value, kind)
    return result


def _read_data(message: pb.CloudEvent, content_type: str | None) -> dict[str, Any] | str | bytes | None:
    kind = message.WhichOneof("data")
    if kind is None:
        return None
    if kind == "proto_data":
        raise ProtocolError("proto_data is not supported; Maestro events carry JSON")
    raw = message.binary_data if kind == "binary_data" else message.text_data.encode("utf-8")
    if not raw:
        return None
    if content_type is None or "json" in content_type.lower():
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ProtocolError(f"event data is not valid JSON: {exc}") from None
        if data is None:
            return None
        if not isinstance(data, dict):
            raise ProtocolError(f"event data must be a JSON object, got {type(data).__name__}")
        return data
    return message.text_data if kind == "text_data" else raw
