"""Building Maestro CloudEvents with the attribute conventions both sides rely on.

Every event we emit has ``specversion`` 1.0, a fresh UUID ``id``, a UTC ``time`` and ``datacontenttype``
``application/json``; extensions whose value is ``None`` are left out rather than sent empty, because upstream
readers treat an empty ``deletiontimestamp`` or ``resourceversion`` differently from a missing one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.v1.event import CloudEvent

from protocol import types
from protocol.errors import ProtocolError

_ATTR_NAME = re.compile(r"^[a-z0-9]+$")
_REQUIRED: Final = ("id", "source", "type")


def make_event(
    *,
    type: str,
    source: str,
    data: Mapping[str, Any] | None,
    extensions: Mapping[str, object] | None = None,
    id: str | None = None,
    time: datetime | None = None,
) -> CloudEvent:
    """A new CloudEvent; ``type`` should come from :func:`protocol.types.manifestbundle_type`."""
    attributes: dict[str, Any] = {
        "specversion": types.SPECVERSION,
        "id": id or str(uuid.uuid4()),
        "source": source,
        "type": type,
        "time": time or datetime.now(UTC),
        "datacontenttype": types.JSON_CONTENT_TYPE,
    }
    for name, value in (extensions or {}).items():
        if value is not None:
            attributes[name] = value
    try:
        return CloudEvent(attributes, dict(data) if data is not None else None)
    except BaseCloudEventException as exc:
        raise ProtocolError(f"invalid CloudEvent: {exc}") from None


def data_object(event: CloudEvent) -> dict[str, Any]:
    """The event's data as a JSON object (``{}`` when absent); anything else is a :class:`ProtocolError`."""
    data = event.get_data()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ProtocolError(f"event data must be a JSON object, got {type(data).__name__}")
    return data


def from_attributes(attributes: dict[str, Any], data: dict[str, Any] | str | bytes | None) -> CloudEvent:
    """Check and restore attribute types, then build the event; every failure is a :class:`ProtocolError`.

    This is the one place decoders (MQTT binary and structured, gRPC) validate what they read: ``specversion``
    1.0, non-empty ``id``/``source``/``type``, a parseable Maestro type (or the heartbeat), attribute names as
    CloudEvents allows them, and the types of ``time``, ``resourceversion`` and ``deletiontimestamp`` restored.
    Mutates and consumes ``attributes``.
    """
    specversion = attributes.get("specversion")
    if specversion != types.SPECVERSION:
        raise ProtocolError(f"unsupported or missing specversion {specversion!r}")
    for name in _REQUIRED:
        value = attributes.get(name)
        if not isinstance(value, str) or not value:
            raise ProtocolError(f"missing or empty required attribute {name!r}")
    if attributes["type"] != types.HEARTBEAT_TYPE:
        types.EventType.parse(attributes["type"])
    for name in list(attributes):
        if not isinstance(name, str) or not _ATTR_NAME.match(name):
            raise ProtocolError(f"invalid attribute name {name!r}")
        value = attributes[name]
        if value is None:
            del attributes[name]
        elif name == "time" or name in types.TIMESTAMP_EXTENSIONS:
            attributes[name] = types.parse_timestamp(name, value)
        elif name in types.INTEGER_EXTENSIONS:
            attributes[name] = types.parse_int(name, value)
        elif not isinstance(value, str | int | bool):
            raise ProtocolError(f"attribute {name!r} must be a scalar, got {type(value).__name__}")
    try:
        return CloudEvent(attributes, data)
    except (BaseCloudEventException, TypeError, ValueError) as exc:
        raise ProtocolError(f"invalid CloudEvent: {exc}") from None
