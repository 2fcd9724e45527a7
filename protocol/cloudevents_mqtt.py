"""CloudEvents ↔ MQTT binding (the SDK ships none), in the style of ``cloudevents.core.bindings``.

Two modes, no MQTT client library imported:

* **binary** (MQTT 5 only): ``datacontenttype`` is the MQTT Content Type property, every other attribute and
  extension is a user property named ``ce-<name>`` with its canonical string value (RFC 3339 ``Z`` times,
  decimal integers), and the payload is the JSON data. Upstream's Go SDK writes the ``ce-`` prefix; the
  CloudEvents MQTT spec does not, so readers accept both (the prefixed one wins when both are present).
* **structured** (any MQTT version; the only choice on 3.1.1, which has no properties): the payload is the
  whole event as ``application/cloudevents+json``, read and written by the SDK's JSON event format (its writer
  is not compact: a typical spec event is ~7 % larger than in binary mode's JSON data; binary mode, upstream's
  choice on MQTT 5, is unaffected).

Decoders restore the CloudEvents types of the extensions we know (``resourceversion`` → ``int``,
``deletiontimestamp`` and ``time`` → ``datetime``), so an event reads the same whichever way it travelled.
Every malformed input raises :class:`ProtocolError` and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from protocol import events, types
from protocol.errors import PayloadTooLargeError, ProtocolError

CE_PREFIX: Final = "ce-"
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"
#: Upstream assumes brokers cap packets at 512 KiB (Azure Event Grid) and refuses larger events.
DEFAULT_MAX_SIZE: Final = 512 * 1024

_ATTR_NAME = re.compile(r"^[a-z0-9]+$")
_JSON_FORMAT: Final = JSONFormat()
_JSON_TYPE = re.compile(r"^(application|text)/([a-zA-Z0-9\-.]+\+)?json(\s*;.*)?$")


@dataclasses.dataclass(frozen=True, slots=True)
class MQTTMessage:
    """What travels in one MQTT PUBLISH, independent of any client library.

    ``user_properties`` keeps order and allows repeats, as MQTT 5 does; ``content_type`` is ``None`` on
    MQTT 3.1.1.
    """

    payload: bytes
    content_type: str | None = None
    user_properties: tuple[tuple[str, str], ...] = ()


def to_binary(event: CloudEvent) -> MQTTMessage:
    """Encode ``event`` in binary mode (MQTT 5)."""
    attributes = event.get_attributes()
    content_type = attributes.get("datacontenttype") or types.JSON_CONTENT_TYPE
    props = tuple(
        (CE_PREFIX + name, _canonical(name, value))
        for name, value in attributes.items()
        if value is not None and name != "datacontenttype"
    )
    return MQTTMessage(
        payload=_write_data(event.get_data(), content_type),
        content_type=content_type,
        user_properties=props,
    )


def from_binary(message: MQTTMessage) -> CloudEvent:
    """Decode a binary-mode message; both ``ce-<name>`` and bare ``<name>`` user properties are accepted."""
    prefixed: dict[str, str] = {}
    bare: dict[str, str] = {}
    for item in message.user_properties:
        if len(item) != 2 or not all(isinstance(part, str) for part in item):
            raise ProtocolError(f"malformed user property {item!r}")
        key, value = item[0].lower(), item[1]
        if key.startswith(CE_PREFIX):
            prefixed[key[len(CE_PREFIX) :]] = value
        else:
            bare.setdefault(key, value)
    # NB: unrelated user properties (tracing headers...) are not CloudEvent attributes; skip what cannot be
    # one.
    attributes: dict[str, Any] = {k: v for k, v in {**bare, **prefixed}.items() if _ATTR_NAME.match(k)}
    content_type = message.content_type or attributes.get("datacontenttype")
    if content_type:
        attributes["datacontenttype"] = content_type
    return events.from_attributes(attributes, _read_data(message.payload, content_type))


def to_structured(event: CloudEvent) -> MQTTMessage:
    """Encode ``event`` in structured JSON mode (works on MQTT 3.1.1 and 5), in the SDK's JSON event format."""
    try:
        payload = _JSON_FORMAT.write(event)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"event cannot be encoded as JSON: {exc}") from None
    return MQTTMessage(payload=payload, content_type=STRUCTURED_CONTENT_TYPE)


def from_structured(message: MQTTMessage) -> CloudEvent:
    """Decode a structured-mode message (the content type is not checked: MQTT 3.1.1 has none).

    The SDK's JSON event format reads the document; :func:`events.from_attributes`, its event factory, checks it
    as it checks every other way an event arrives.
    """
    if message.payload.lstrip()[:1] != b"{":
        raise ProtocolError("structured CloudEvent must be a JSON object")
    if b'"data_base64"' in message.payload:
        _check_base64(message.payload)
    try:
        return _JSON_FORMAT.read(_structured_event, message.payload)  # type: ignore[return-value]
    except ProtocolError:
        raise
    except UnicodeDecodeError:
        raise ProtocolError("payload is not valid UTF-8") from None
    except (ValueError, TypeError, AttributeError, RecursionError, binascii.Error) as exc:
        # NB: the format parses JSON, ``time`` and ``data_base64`` before the factory sees them.
        raise ProtocolError(f"structured CloudEvent cannot be read: {exc}") from None


def _check_base64(payload: bytes) -> None:
    """The SDK's format decodes ``data_base64`` leniently (it drops what is not base64), which would turn a
    corrupt payload into other bytes: refuse it first. Upstream's events carry JSON ``data``, so this is rare."""
    encoded = _load_json(payload).get("data_base64")
    if encoded is None:
        return
    if not isinstance(encoded, str):
        raise ProtocolError("data_base64 must be a string")
    try:
        base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("data_base64 is not valid base64") from None


def _structured_event(attributes: dict[str, Any], data: dict[str, Any] | str | bytes | None) -> CloudEvent:
    if data is not None and not isinstance(data, dict | str | bytes):
        raise ProtocolError(f"event data must be a JSON object, got {type(data).__name__}")
    return events.from_attributes(attributes, data)


def is_structured(message: MQTTMessage) -> bool:
    """Whether ``message`` carries a structured event (by content type, or by shape when there is none)."""
    if message.content_type:
        return message.content_type.lower().startswith("application/cloudevents")
    if any(k.lower() in ("ce-specversion", "specversion") for k, _ in message.user_properties):
        return False
    return message.payload.lstrip()[:1] == b"{"


def decode(message: MQTTMessage) -> CloudEvent:
    """Decode whichever mode ``message`` is in."""
    return from_structured(message) if is_structured(message) else from_binary(message)


def encode(event: CloudEvent, *, binary: bool = True) -> MQTTMessage:
    """Encode in binary mode (MQTT 5, upstream's choice) or structured mode (``binary=False``, MQTT 3.1.1)."""
    return to_binary(event) if binary else to_structured(event)


def encoded_size(message: MQTTMessage) -> int:
    """Bytes the message adds to a PUBLISH packet: payload, content type and user properties (with length
    fields)."""
    size = len(message.payload)
    if message.content_type:
        size += 3 + len(message.content_type.encode("utf-8"))
    for key, value in message.user_properties:
        size += 5 + len(key.encode("utf-8")) + len(value.encode("utf-8"))
    return size


def check_size(message: MQTTMessage, *, limit: int = DEFAULT_MAX_SIZE) -> None:
    """Raise :class:`PayloadTooLargeError` if ``message`` is over ``limit`` bytes."""
    size = encoded_size(message)
    if size > limit:
        raise PayloadTooLargeError(size, limit)


def _canonical(name: str, value: object) -> str:
    if isinstance(value, datetime):
        return types.format_timestamp(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping | list):
        # NB: metadata/logtracing are JSON strings upstream; tolerate callers that pass the object itself.
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    raise ProtocolError(f"attribute {name!r} has unsupported type {type(value).__name__}")


def _write_data(data: object, content_type: str) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str) and not _JSON_TYPE.match(content_type):
        return data.encode("utf-8")
    try:
        return types.to_json(data).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"event data cannot be encoded as JSON: {exc}") from None


def _read_data(payload: bytes, content_type: str | None) -> dict[str, Any] | str | bytes | None:
    if not payload:
        return None
    if content_type is None or _JSON_TYPE.match(content_type):
        data = _load_json(payload)
        if data is None:
            return None
        if not isinstance(data, dict):
            raise ProtocolError(f"event data must be a JSON object, got {type(data).__name__}")
        return data
    if content_type.startswith("text/"):
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("text data is not valid UTF-8") from None
    return bytes(payload)


def _load_json(payload: bytes) -> Any:
    try:
        return json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProtocolError("payload is not valid UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"payload is not valid JSON: {exc}") from None
