"""Building Maestro CloudEvents with the attribute conventions both sides rely on.

Every event we emit has ``specversion`` 1.0, a fresh UUID ``id``, a UTC ``time`` and ``datacontenttype``
``application/json``; extensions whose value is ``None`` are left out rather than sent empty, because upstream
readers treat an empty ``deletiontimestamp`` or ``resourceversion`` differently from a missing one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.v1.event import CloudEvent

from protocol import types
from protocol.errors import ProtocolError


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
