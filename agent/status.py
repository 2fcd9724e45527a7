"""Conditions and the status the hub receives, both derived from an AppliedWork's status.

The hub's ``ManifestBundleStatus`` is a pure function of the AppliedWork status, so its hash is stable across
agent restarts: an agent that comes back with nothing changed has nothing new to tell the hub.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from protocol import payloads, types


def now() -> str:
    return types.format_timestamp(datetime.now(UTC).replace(microsecond=0))


def condition(
    previous: Sequence[Mapping[str, Any]],
    kind: str,
    status: str,
    reason: str,
    message: str,
    *,
    generation: int,
    when: str,
) -> dict[str, Any]:
    """A ``metav1.Condition``; ``lastTransitionTime`` stays what it was unless ``status`` changes."""
    before = next((c for c in previous if c.get("type") == kind), None)
    since = before.get("lastTransitionTime") if before is not None and before.get("status") == status else None
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or when,
        "observedGeneration": generation,
    }


def find(conditions: Sequence[Mapping[str, Any]] | None, kind: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == kind), None)


def is_true(conditions: Sequence[Mapping[str, Any]] | None, kind: str) -> bool:
    found = find(conditions, kind)
    return found is not None and found.get("status") == "True"


_META_KEYS = ("ordinal", "group", "version", "kind", "resource", "name", "namespace")


def bundle_status(status: Mapping[str, Any]) -> payloads.ManifestBundleStatus:
    """The ``ManifestBundleStatus`` the hub gets for an AppliedWork status."""
    resource_status: list[payloads.ManifestCondition] = []
    for entry in status.get("manifests") or []:
        meta: dict[str, Any] = {k: entry[k] for k in _META_KEYS if k in entry}
        resource_status.append(
            payloads.ManifestCondition(
                resourceMeta=payloads.ResourceMeta(**meta),  # type: ignore[typeddict-item]
                statusFeedback=payloads.StatusFeedback(values=list(entry.get("feedback") or [])),
                conditions=[_wire_condition(c) for c in entry.get("conditions") or []],
            )
        )
    return payloads.ManifestBundleStatus(
        conditions=[_wire_condition(c) for c in status.get("conditions") or []],
        resourceStatus=resource_status,
    )


def _wire_condition(c: Mapping[str, Any]) -> payloads.Condition:
    out = payloads.Condition(
        type=str(c.get("type", "")),
        status=c.get("status", "Unknown"),
        reason=str(c.get("reason", "")),
        message=str(c.get("message", "")),
        lastTransitionTime=str(c.get("lastTransitionTime", "")),
    )
    if "observedGeneration" in c:
        out["observedGeneration"] = int(c["observedGeneration"])
    return out


def deleted_status(version: int, consumer: str) -> payloads.ManifestBundleStatus:
    """What the hub gets once every manifest of a deleted work is gone (upstream's reason and message)."""
    when = now()
    return payloads.ManifestBundleStatus(
        conditions=[
            payloads.Condition(
                type="Deleted",
                status="True",
                reason="ManifestsDeleted",
                message=f"The manifests are deleted from the cluster {consumer}",
                lastTransitionTime=when,
                observedGeneration=version,
            )
        ],
        resourceStatus=[],
    )
