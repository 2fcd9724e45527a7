"""Event type strings, extension attribute names and readers for extension values.

A Maestro CloudEvent type is ``<group>.<version>.<resource>.<subresource>.<action>``, for example
``io.open-cluster-management.works.v1alpha1.manifestbundles.spec.create_request``. Everything before the
last two dot-separated segments is the *data type*; the subresource is ``spec`` (hub → agent intent) or
``status`` (agent → hub observation).

Extension values arrive typed in structured mode and over gRPC but as strings in MQTT binary mode (every
MQTT 5 user property is a string), so the readers here accept both and raise :class:`ProtocolError` for
anything else.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime
from typing import Any, Final, Literal

from cloudevents.core.base import BaseCloudEvent

from protocol.errors import ProtocolError

SPECVERSION: Final = "1.0"
JSON_CONTENT_TYPE: Final = "application/json"

#: The data type of every event Maestro moves; the codec upstream is forced to ``manifestbundle``.
MANIFESTBUNDLE_DATA_TYPE: Final = "io.open-cluster-management.works.v1alpha1.manifestbundles"
#: Heartbeats are sent on gRPC Subscribe streams; they carry no data and no extensions.
HEARTBEAT_TYPE: Final = "io.open-cluster-management.cloudevents.heartbeat"

Subresource = Literal["spec", "status"]
SPEC: Final = "spec"
STATUS: Final = "status"

CREATE_REQUEST: Final = "create_request"
UPDATE_REQUEST: Final = "update_request"
DELETE_REQUEST: Final = "delete_request"
RESYNC_REQUEST: Final = "resync_request"
RESYNC_RESPONSE: Final = "resync_response"
WATCH_REQUEST: Final = "watch_request"
ACTIONS: Final = frozenset(
    {CREATE_REQUEST, UPDATE_REQUEST, DELETE_REQUEST, RESYNC_REQUEST, RESYNC_RESPONSE, WATCH_REQUEST}
)

# Extension attribute names (CloudEvents requires ``^[a-z0-9]+$``).
EXT_RESOURCE_ID: Final = "resourceid"
EXT_RESOURCE_VERSION: Final = "resourceversion"
EXT_CLUSTER_NAME: Final = "clustername"
EXT_ORIGINAL_SOURCE: Final = "originalsource"
EXT_DELETION_TIMESTAMP: Final = "deletiontimestamp"
EXT_SEQUENCE_ID: Final = "sequenceid"
EXT_STATUS_HASH: Final = "statushash"
EXT_METADATA: Final = "metadata"
EXT_LOG_TRACING: Final = "logtracing"
EXTENSIONS: Final = frozenset(
    {
        EXT_RESOURCE_ID,
        EXT_RESOURCE_VERSION,
        EXT_CLUSTER_NAME,
        EXT_ORIGINAL_SOURCE,
        EXT_DELETION_TIMESTAMP,
        EXT_SEQUENCE_ID,
        EXT_STATUS_HASH,
        EXT_METADATA,
        EXT_LOG_TRACING,
    }
)
#: Extensions whose CloudEvents type is Integer / Timestamp; the bindings use this to restore types.
INTEGER_EXTENSIONS: Final = frozenset({EXT_RESOURCE_VERSION})
TIMESTAMP_EXTENSIONS: Final = frozenset({EXT_DELETION_TIMESTAMP})

_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")
_INT = re.compile(r"^[+-]?[0-9]+$")


@dataclasses.dataclass(frozen=True, slots=True)
class EventType:
    """A parsed event type; ``str(t)`` (or :meth:`format`) gives the wire form back."""

    data_type: str
    subresource: Subresource
    action: str

    @classmethod
    def parse(cls, value: object) -> EventType:
        """Parse a wire type string; anything malformed raises :class:`ProtocolError`."""
        if not isinstance(value, str):
            raise ProtocolError(f"event type must be a string, got {type(value).__name__}")
        parts = value.split(".")
        if len(parts) < 5 or not all(_SEGMENT.match(p) for p in parts):
            raise ProtocolError(f"malformed event type {value!r}")
        *head, subresource, action = parts
        if subresource == SPEC:
            sub: Subresource = "spec"
        elif subresource == STATUS:
            sub = "status"
        else:
            raise ProtocolError(f"unknown subresource {subresource!r} in event type {value!r}")
        if action not in ACTIONS:
            raise ProtocolError(f"unknown action {action!r} in event type {value!r}")
        return cls(data_type=".".join(head), subresource=sub, action=action)

    def format(self) -> str:
        return f"{self.data_type}.{self.subresource}.{self.action}"

    def __str__(self) -> str:
        return self.format()


def manifestbundle_type(subresource: Subresource, action: str) -> str:
    """The wire type string for a manifest-bundle event, e.g. ``manifestbundle_type("spec",
    CREATE_REQUEST)``."""
    return EventType(data_type=MANIFESTBUNDLE_DATA_TYPE, subresource=subresource, action=action).format()


def parse_int(name: str, value: object) -> int:
    """Read an Integer attribute value that may arrive as an ``int`` or its decimal string form."""
    if isinstance(value, bool):  # NB: bool is an int subclass, and True is no resource version.
        raise ProtocolError(f"{name} must be an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT.match(value.strip()):
        return int(value.strip())
    raise ProtocolError(f"{name} must be an integer, got {value!r}")


def parse_timestamp(name: str, value: object) -> datetime:
    """Read a Timestamp attribute value given as a ``datetime`` or an RFC 3339 string; naive means UTC."""
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, str):
        try:
            result = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ProtocolError(f"{name} must be an RFC 3339 timestamp, got {value!r}") from None
    else:
        raise ProtocolError(f"{name} must be a timestamp, got {type(value).__name__}")
    return result if result.tzinfo is not None else result.replace(tzinfo=UTC)


to_json: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode
"""Compact JSON text, as ``json.dumps(value, separators=(",", ":"), ensure_ascii=False)`` writes it, without building
an encoder per call (a noticeable share of the cost for the small documents of every spec event). It does not look
for reference cycles (~20 % of its time): what it encodes was decoded from JSON or built here, and has none."""


def format_timestamp(value: datetime) -> str:
    """Canonical RFC 3339 form with a ``Z`` suffix for UTC, as Go's ``time.RFC3339Nano`` writes it."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def int_extension(event: BaseCloudEvent, name: str, *, default: int | None = None) -> int:
    """Read an integer extension, accepting the MQTT binary-mode string form; missing ⇒ ``default`` or
    error."""
    value = event.get_extension(name)
    if value is None:
        if default is None:
            raise ProtocolError(f"missing extension {name!r}")
        return default
    return parse_int(name, value)


def str_extension(event: BaseCloudEvent, name: str, *, default: str | None = None) -> str:
    """Read a string extension; a missing one yields ``default`` or raises :class:`ProtocolError`."""
    value: Any = event.get_extension(name)
    if value is None:
        if default is None:
            raise ProtocolError(f"missing extension {name!r}")
        return default
    if not isinstance(value, str):
        raise ProtocolError(f"{name} must be a string, got {type(value).__name__}")
    return value


def timestamp_extension(event: BaseCloudEvent, name: str) -> datetime | None:
    """Read an optional timestamp extension such as ``deletiontimestamp``."""
    value: Any = event.get_extension(name)
    return None if value is None else parse_timestamp(name, value)


def event_type(event: BaseCloudEvent) -> EventType:
    """The parsed type of ``event``."""
    return EventType.parse(event.get_type())
