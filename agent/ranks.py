"""The order in which the agent applies a work's manifests, and the order in which it deletes what it applied.

Apply order follows the OCM work agent (ocm ``pkg/work/spoke/controllers/manifestcontroller``,
``resourceApplyOrder``): a stable sort by a rank looked up by ``kind`` alone (the API group is not consulted),
so foundations such as Namespaces and CRDs exist before what lives in them, and webhooks come after the
workloads that serve them. Manifests keep their spec index (``ordinal``) whatever the order.

OCM does not delete in reverse apply order. The AppliedManifestWork keeps its applied resources sorted by
(group, version, resource, namespace, name), and both removal paths (a manifest dropped from the work, and
the work itself being deleted) walk that list once, issuing every delete (Background propagation, UID
precondition) without waiting for one to finish before the next, then requeue until all are gone.
:func:`delete_order` gives that order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

KIND_RANKS: Mapping[str, int] = MappingProxyType(
    {
        # Cluster-scoped foundations.
        "PriorityClass": 0,
        "Namespace": 0,
        "CustomResourceDefinition": 0,
        "StorageClass": 0,
        "PersistentVolume": 0,
        "PodSecurityPolicy": 0,
        # RBAC.
        "ClusterRole": 1,
        "ClusterRoleBinding": 1,
        "Role": 1,
        "RoleBinding": 1,
        # Namespace policies and identity.
        "NetworkPolicy": 2,
        "ResourceQuota": 2,
        "LimitRange": 2,
        "PodDisruptionBudget": 2,
        "ServiceAccount": 2,
        # Configuration and storage that workloads mount or read.
        "Secret": 3,
        "ConfigMap": 3,
        "PersistentVolumeClaim": 3,
        # Networking.
        "Service": 4,
        # Workloads.
        "DaemonSet": 5,
        "Pod": 5,
        "ReplicationController": 5,
        "ReplicaSet": 5,
        "Deployment": 5,
        "HorizontalPodAutoscaler": 5,
        "StatefulSet": 5,
        "Job": 5,
        "CronJob": 5,
        # What may need running workloads behind it.
        "APIService": 6,
        "MutatingWebhookConfiguration": 6,
        "ValidatingWebhookConfiguration": 6,
        "ValidatingAdmissionPolicy": 6,
        "ValidatingAdmissionPolicyBinding": 6,
    }
)
"""Apply rank by kind; lower goes first."""

UNLISTED_RANK = 1000
"""Rank of any kind missing from :data:`KIND_RANKS` (custom resources included)."""

UNREADABLE_RANK = 1001
"""Rank of a manifest that is not an object with a non-empty string ``kind`` (OCM cannot decode it)."""

_IDENTITY = ("group", "version", "resource", "namespace", "name")


def rank(manifest: object) -> int:
    """The apply rank of one manifest."""
    kind = manifest.get("kind") if isinstance(manifest, Mapping) else None
    if not isinstance(kind, str) or not kind:
        return UNREADABLE_RANK
    return KIND_RANKS.get(kind, UNLISTED_RANK)


def apply_order(manifests: Sequence[object]) -> list[int]:
    """Ordinals of ``manifests`` in apply order (stable: equal ranks keep their spec order)."""
    return sorted(range(len(manifests)), key=lambda ordinal: rank(manifests[ordinal]))


def delete_order(resources: Sequence[Mapping[str, Any]]) -> list[int]:
    """Indexes of applied resources (``{group, version, resource, namespace, name, ...}``) in delete order.

    This is also the order OCM stores them in the AppliedManifestWork's ``status.appliedResources``.
    """

    def key(index: int) -> tuple[str, ...]:
        resource = resources[index]
        return tuple(value if isinstance(value := resource.get(field), str) else "" for field in _IDENTITY)

    return sorted(range(len(resources)), key=key)
