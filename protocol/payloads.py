"""Typed shapes of CloudEvent data payloads, plus strict readers for the resync payloads.

The shapes follow sdk-go's ``clients/work/payload`` JSON (camelCase keys). Manifests are raw Kubernetes
objects and stay ``dict[str, Any]``: validating them is the hub's job, not the wire contract's. The resync
readers *are* strict, because a resync payload drives deletes and re-sends, and a wrong shape must fail
loudly as :class:`ProtocolError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal, NotRequired, TypedDict

from protocol import types
from protocol.errors import ProtocolError

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(TypedDict):
    """A ``metav1.Condition``."""

    type: str
    status: ConditionStatus
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: NotRequired[int]


class ServiceAccountSubject(TypedDict):
    namespace: str
    name: str


class ExecutorSubject(TypedDict):
    type: Literal["ServiceAccount"]
    serviceAccount: NotRequired[ServiceAccountSubject]


class Executor(TypedDict):
    subject: ExecutorSubject


class DeleteOption(TypedDict, total=False):
    propagationPolicy: Literal["Foreground", "Orphan", "SelectivelyOrphan"]
    selectivelyOrphans: dict[str, Any]
    ttlSecondsAfterFinished: int


class ManifestBundle(TypedDict):
    """Spec payload of ``spec.create_request`` / ``update_request`` / ``resync_response``."""

    manifests: list[dict[str, Any]]
    deleteOption: NotRequired[DeleteOption]
    manifestConfigs: NotRequired[list[dict[str, Any]]]
    executer: NotRequired[Executor]  # NB: upstream's spelling.


class ResourceMeta(TypedDict, total=False):
    ordinal: int
    group: str
    version: str
    kind: str
    resource: str
    name: str
    namespace: str


FieldValueType = Literal["Integer", "String", "Boolean", "JsonRaw"]


class FieldValue(TypedDict):
    type: FieldValueType
    integer: NotRequired[int]
    string: NotRequired[str]
    boolean: NotRequired[bool]
    jsonRaw: NotRequired[str]


class FeedbackValue(TypedDict):
    name: str
    fieldValue: FieldValue


class StatusFeedback(TypedDict, total=False):
    values: list[FeedbackValue]


class ManifestCondition(TypedDict):
    """Per-manifest status inside ``ManifestBundleStatus.resourceStatus``."""

    resourceMeta: ResourceMeta
    statusFeedback: NotRequired[StatusFeedback]
    conditions: list[Condition]


class ManifestBundleStatus(TypedDict):
    """Status payload of ``status.update_request`` / ``resync_response``.

    ``manifestBundle`` is only set on hub → source events so cache-less sources can rebuild the whole work.
    """

    conditions: list[Condition]
    resourceStatus: list[ManifestCondition]
    manifestBundle: NotRequired[ManifestBundle]


class ResourceVersion(TypedDict):
    resourceID: str
    resourceVersion: int


class SpecResyncRequest(TypedDict):
    """Data of ``spec.resync_request`` (agent → hub): what the agent has."""

    resourceVersions: list[ResourceVersion]


class ResourceStatusHash(TypedDict):
    resourceID: str
    statusHash: str


class StatusResyncRequest(TypedDict):
    """Data of ``status.resync_request`` (hub → agent): what the hub has; an empty list means "send all"."""

    statusHashes: list[ResourceStatusHash]


OBJECT_META_KEYS: Final = (
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
)
"""``metav1.ObjectMeta``'s JSON keys in the order Go writes them."""


def _go_time(value: datetime) -> str:
    """A ``metav1.Time`` as Go writes it: RFC 3339, UTC, whole seconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def work_metadata(
    stored: Mapping[str, Any],
    *,
    resource_id: str,
    consumer: str,
    version: int,
    created_at: datetime | None,
    deleted_at: datetime | None = None,
) -> str:
    """The ``metadata`` extension: the work's ``ObjectMeta`` as JSON text, as sdk-go's source codec writes it.

    ``stored`` is the metadata a client gave (labels, annotations, …); the rest comes from the resource: the name
    and uid are the resource id (upstream renames the work so that it is unique on the agent), the namespace is
    the consumer, ``generation`` and ``resourceVersion`` are the resource's version (as upstream's source client
    sets them), the timestamps its creation and deletion. Keys in Go's field order, maps sorted, empty fields
    left out and an unknown ``creationTimestamp`` written as ``null``, as ``json.Marshal`` does.
    """
    meta: dict[str, Any] = {k: v for k, v in stored.items() if v not in (None, "", 0, [], {})}
    meta.update(
        name=resource_id,
        namespace=consumer,
        uid=resource_id,
        resourceVersion=str(version),
        generation=version,
        creationTimestamp=_go_time(created_at) if created_at is not None else None,
    )
    meta.pop("deletionTimestamp", None)
    if deleted_at is not None:
        meta["deletionTimestamp"] = _go_time(deleted_at)
    if not version:
        del meta["generation"]
    for key in ("labels", "annotations"):
        if isinstance(meta.get(key), dict):
            meta[key] = dict(sorted(meta[key].items()))
    ordered: dict[str, Any] = {k: meta[k] for k in OBJECT_META_KEYS if k in meta}
    ordered.update(sorted((k, v) for k, v in meta.items() if k not in ordered))
    return types.to_json(ordered)


def _entries(data: object, key: str) -> list[dict[str, Any]]:
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ProtocolError(f"resync payload must be a JSON object, got {type(data).__name__}")
    entries = data.get(key)
    if entries is None:
        return []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ProtocolError(f"{key} must be a list of objects")
    return entries


def _resource_id(entry: dict[str, Any], key: str) -> str:
    resource_id = entry.get("resourceID")
    if not isinstance(resource_id, str) or not resource_id:
        raise ProtocolError(f"{key}[].resourceID must be a non-empty string, got {resource_id!r}")
    return resource_id


def read_spec_resync(data: object) -> list[ResourceVersion]:
    """Validate ``spec.resync_request`` data; versions may be numbers or decimal strings (Go writes ints)."""
    key = "resourceVersions"
    return [
        ResourceVersion(
            resourceID=_resource_id(e, key),
            resourceVersion=types.parse_int(f"{key}[].resourceVersion", e.get("resourceVersion", 0)),
        )
        for e in _entries(data, key)
    ]


def read_status_resync(data: object) -> list[ResourceStatusHash]:
    """Validate ``status.resync_request`` data."""
    key = "statusHashes"
    result: list[ResourceStatusHash] = []
    for e in _entries(data, key):
        status_hash = e.get("statusHash", "")
        if not isinstance(status_hash, str):
            raise ProtocolError(f"{key}[].statusHash must be a string, got {status_hash!r}")
        result.append(ResourceStatusHash(resourceID=_resource_id(e, key), statusHash=status_hash))
    return result
