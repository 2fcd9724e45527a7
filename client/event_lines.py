"""One line per CloudEvent seen on a consumer's topics, for ``maestro mqtt watch`` (pure: no I/O).

::

    2026-11-24T11:35:08.557Z  cluster1  sourceevents  spec.create_request    3f28c601-…  v1  seq=-  1 manifest: …
    2026-11-24T11:35:08.601Z  cluster1  agentevents   status.update_request  3f28c601-…  v1  seq=186…  Applied=True …

Fields: the event's ``time``, the consumer and kind of the topic, the type without its data-type prefix, the
``resourceid``, ``resourceversion`` and ``sequenceid`` extensions (``-`` when absent), and what the data says:
the manifests of a spec, the conditions of a status (with the message of any that is not True), the size of a
resync.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from cloudevents.core.v1.event import CloudEvent

from client import render
from protocol import topics, types
from protocol.errors import ProtocolError

MAX_LISTED: Final = 3


def line(topic: str, event: CloudEvent) -> str:
    consumer, kind = where(topic)
    attributes = event.get_attributes()
    rid = attributes.get(types.EXT_RESOURCE_ID) or "-"
    version = attributes.get(types.EXT_RESOURCE_VERSION)
    sequence = attributes.get(types.EXT_SEQUENCE_ID) or "-"
    fields = [
        timestamp(attributes.get("time")),
        consumer,
        kind.ljust(12),
        short_type(event.get_type()).ljust(22),
        str(rid),
        f"v{version}" if version is not None else "v-",
        f"seq={sequence}",
        summary(event),
    ]
    return "  ".join(fields)


def unreadable(topic: str, error: str, *, now: datetime | None = None) -> str:
    """The line for a message that is not a CloudEvent we can read."""
    consumer, kind = where(topic)
    return "  ".join([timestamp(now or datetime.now(UTC)), consumer, kind.ljust(12), "unreadable", error])


def where(topic: str) -> tuple[str, str]:
    """The consumer and kind (``sourceevents``/``agentevents``) of a received topic."""
    try:
        parts = topics.parse(topic)
    except ProtocolError:
        return "?", topic
    return parts.consumer, parts.kind


def short_type(value: str) -> str:
    """``spec.create_request`` for ``io.open-cluster-management.works.v1alpha1.manifestbundles.spec.create_request``."""
    if value == types.HEARTBEAT_TYPE:
        return "heartbeat"
    try:
        parsed = types.EventType.parse(value)
    except ProtocolError:
        return value
    return f"{parsed.subresource}.{parsed.action}"


def timestamp(value: object) -> str:
    if not isinstance(value, datetime):
        return "-" if value is None else str(value)
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def summary(event: CloudEvent) -> str:
    """What the event's data says, in one line."""
    data = event.get_data()
    data = data if isinstance(data, Mapping) else {}
    kind = short_type(event.get_type())
    deleting = event.get_attributes().get(types.EXT_DELETION_TIMESTAMP) is not None
    if kind == "spec.resync_request":
        versions = data.get("resourceVersions") or []
        return f"resync: the agent holds {len(versions)} resource{_s(versions)}"
    if kind == "status.resync_request":
        hashes = data.get("statusHashes") or []
        return f"resync: the source holds {len(hashes)} status hash{'es' if len(hashes) != 1 else ''}"
    if kind.startswith("spec."):
        listed = manifests(data.get("manifests") or [])
        if deleting or kind == "spec.delete_request":
            return "delete" + (f" ({listed})" if data.get("manifests") else "")
        return listed
    if kind.startswith("status."):
        text = render.condition_summary(data.get("conditions") or [])
        failing = _failing_manifests(data.get("resourceStatus") or [])
        return text + (f"; {failing}" if failing else "")
    return kind


def manifests(items: Sequence[Any]) -> str:
    """``3 manifests: Deployment default/nginx, Service default/nginx, … +1 more``."""
    refs = [render.manifest_ref(m) if isinstance(m, Mapping) else "?" for m in items]
    shown = ", ".join(refs[:MAX_LISTED]) + (f", … +{len(refs) - MAX_LISTED} more" if len(refs) > MAX_LISTED else "")
    return f"{len(refs)} manifest{_s(refs)}" + (f": {shown}" if refs else "")


def _failing_manifests(items: Sequence[Any]) -> str:
    """The first manifest whose Applied condition is not True, with its message (the work's is a summary)."""
    for item in items:
        if not isinstance(item, Mapping):
            continue
        for cond in item.get("conditions") or []:
            if cond.get("type") == "Applied" and cond.get("status") != "True":
                meta = item.get("resourceMeta") or {}
                ref = render.manifest_ref({"kind": meta.get("kind"), "metadata": meta})
                return f"{ref}: {cond.get('message') or cond.get('reason') or cond.get('status')}"
    return ""


def _s(items: Sequence[Any]) -> str:
    return "" if len(items) == 1 else "s"
