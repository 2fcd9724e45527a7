"""Rows to the JSON shapes of the REST API (upstream's, and the seed README's for single resources)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from server.errors import API_PATH
from server.services.watch import StatusEvent
from server.store.rows import ConsumerRow, ResourceRow


def timestamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def consumer(row: ConsumerRow) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "kind": "Consumer",
        "href": f"{API_PATH}/consumers/{row.id}",
        "name": row.name,
        "created_at": timestamp(row.created_at),
        "updated_at": timestamp(row.updated_at),
    }
    if row.labels:
        out["labels"] = row.labels
    return out


def _bundle_status(status: dict[str, Any] | None) -> dict[str, Any] | None:
    if not status:
        return None
    return {k: status[k] for k in ("ObservedVersion", "SequenceID", "conditions", "resourceStatus") if k in status}


def _content_status(manifest_status: dict[str, Any]) -> Any:
    """The manifest's ``.status``, fed back by the agent as the JsonRaw feedback value named ``status``."""
    values = (manifest_status.get("statusFeedback") or {}).get("values") or []
    for value in values:
        field = value.get("fieldValue") or {}
        if value.get("name") == "status" and field.get("type") == "JsonRaw":
            try:
                return json.loads(field.get("jsonRaw") or "null")
            except ValueError:
                return None
    return None


def _single_status(status: dict[str, Any] | None) -> dict[str, Any] | None:
    if not status:
        return None
    manifests = status.get("resourceStatus") or []
    first = manifests[0] if manifests else {}
    return {
        "ContentStatus": _content_status(first),
        "ReconcileStatus": {
            "Conditions": first.get("conditions") or [],
            "ObservedGeneration": status.get("ObservedVersion"),
            "ObservedVersion": status.get("ObservedVersion"),
            "SequenceID": status.get("SequenceID"),
        },
    }


def _common(row: ResourceRow, *, kind: str, collection: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "kind": kind,
        "href": f"{API_PATH}/{collection}/{row.id}",
        "name": row.name,
        "consumer_name": row.consumer_name,
        "version": row.version,
        "created_at": timestamp(row.created_at),
        "updated_at": timestamp(row.updated_at),
    }
    if row.deleted_at is not None:
        out["deleted_at"] = timestamp(row.deleted_at)
    return out


def resource(row: ResourceRow) -> dict[str, Any]:
    data = row.payload["data"]
    configs = data.get("manifestConfigs") or [{}]
    out = _common(row, kind="Resource", collection="resources")
    out["manifest"] = data["manifests"][0]
    out["update_strategy"] = configs[0].get("updateStrategy") or {"type": "ServerSideApply"}
    out["delete_option"] = data.get("deleteOption") or {"propagationPolicy": "Foreground"}
    if (status := _single_status(row.status)) is not None:
        out["status"] = status
    return out


def bundle(row: ResourceRow) -> dict[str, Any]:
    data = row.payload["data"]
    out = _common(row, kind="ResourceBundle", collection="resource-bundles")
    meta = dict(row.payload.get("metadata") or {})
    meta["creationTimestamp"] = timestamp(row.created_at.replace(microsecond=0))
    if row.deleted_at is not None:
        meta["deletionTimestamp"] = timestamp(row.deleted_at.replace(microsecond=0))
    out["metadata"] = meta
    out["manifests"] = data.get("manifests") or []
    out["manifest_configs"] = data.get("manifestConfigs") or []
    out["delete_option"] = data.get("deleteOption") or {}
    if (status := _bundle_status(row.status)) is not None:
        out["status"] = status
    return out


def status_event(event: StatusEvent) -> dict[str, Any]:
    """A status log entry as the bundle it describes (spec as of now, or as deleted)."""
    spec = event.spec or {}
    data = spec.get("data") or {}
    out: dict[str, Any] = {
        "id": event.resource_id,
        "kind": "ResourceBundle",
        "href": f"{API_PATH}/resource-bundles/{event.resource_id}",
        "consumer_name": event.consumer_name,
        "version": event.version,
        "metadata": spec.get("metadata") or {},
        "manifests": data.get("manifests") or [],
        "manifest_configs": data.get("manifestConfigs") or [],
        "delete_option": data.get("deleteOption") or {},
    }
    if (status := _bundle_status(event.status)) is not None:
        out["status"] = status
    return out
