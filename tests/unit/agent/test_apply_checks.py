"""The decisions that keep the agent from writing what is already there, and the shapes it writes."""

from __future__ import annotations

from typing import Any

from agent import apply, works
from agent.kube import Kind

DEPLOYMENTS = Kind(group="apps", version="v1", kind="Deployment", resource="deployments", namespaced=True)
CLUSTER_ROLES = Kind(
    group="rbac.authorization.k8s.io", version="v1", kind="ClusterRole", resource="clusterroles", namespaced=False
)
OWNER = works.owner_reference("rid-1", "uid-1")


def _deployment(replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "apps", "labels": {"app": "web"}},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "main", "image": "nginx"}]}}},
        "status": {"replicas": 7},
    }


def _live(desired: dict[str, Any]) -> dict[str, Any]:
    """What the apiserver returns: defaults added, metadata filled in, other owners kept."""
    live = {**desired, "status": {"readyReplicas": 1}}
    live["metadata"] = {
        **desired["metadata"],
        "uid": "obj-uid",
        "resourceVersion": "42",
        "generation": 3,
        "ownerReferences": [{"uid": "someone-else"}, *desired["metadata"]["ownerReferences"]],
    }
    container = {"name": "main", "image": "nginx", "imagePullPolicy": "Always", "terminationMessagePath": "/dev/log"}
    live["spec"] = {
        **desired["spec"],
        "progressDeadlineSeconds": 600,
        "template": {"spec": {"containers": [container]}},
    }
    return live


def test_desired_adds_owner_and_label_and_drops_status() -> None:
    body = apply.desired(_deployment(), DEPLOYMENTS, owner=OWNER, work="rid-1")
    assert body["metadata"]["ownerReferences"] == [OWNER]
    assert body["metadata"]["labels"] == {"app": "web", works.WORK_LABEL: "rid-1"}
    assert "status" not in body
    assert _deployment()["metadata"]["labels"] == {"app": "web"}  # the manifest itself is not changed


def test_desired_drops_namespace_of_cluster_scoped_objects() -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "r", "namespace": "x"},
    }
    assert "namespace" not in apply.desired(role, CLUSTER_ROLES, owner=OWNER, work="w")["metadata"]


def test_holds_ignores_defaults_and_other_owners() -> None:
    body = apply.desired(_deployment(), DEPLOYMENTS, owner=OWNER, work="rid-1")
    assert apply.holds(body, _live(body))


def test_holds_sees_a_changed_field_a_missing_owner_and_a_different_list() -> None:
    body = apply.desired(_deployment(), DEPLOYMENTS, owner=OWNER, work="rid-1")
    scaled = _live(body)
    scaled["spec"]["replicas"] = 3
    assert not apply.holds(body, scaled)
    orphaned = _live(body)
    orphaned["metadata"]["ownerReferences"] = [{"uid": "someone-else"}]
    assert not apply.holds(body, orphaned)
    two = _live(body)
    two["spec"]["template"]["spec"]["containers"].append({"name": "sidecar"})
    assert not apply.holds(body, two)


def test_holds_compares_numbers_and_booleans_strictly() -> None:
    assert apply.holds({"a": 1}, {"a": 1.0})
    assert not apply.holds({"a": True}, {"a": 1})
    assert not apply.holds({"a": "1"}, {"a": 1})


def test_marker_prefers_generation() -> None:
    assert apply.marker({"metadata": {"generation": 3, "resourceVersion": "9"}}) == "g:3"
    assert apply.marker({"metadata": {"resourceVersion": "9"}}) == "rv:9"


def test_update_merges_labels_annotations_and_owners_into_the_live_object() -> None:
    body = apply.desired(_deployment(replicas=2), DEPLOYMENTS, owner=OWNER, work="rid-1")
    live = _live(apply.desired(_deployment(), DEPLOYMENTS, owner=OWNER, work="rid-1"))
    live["metadata"]["labels"] = {"added-by": "someone"}
    live["metadata"]["annotations"] = {"note": "kept"}
    merged = apply._merged(live, body)
    assert merged["spec"]["replicas"] == 2
    assert merged["metadata"]["resourceVersion"] == "42"  # optimistic concurrency on the replace
    assert merged["metadata"]["labels"] == {"added-by": "someone", "app": "web", works.WORK_LABEL: "rid-1"}
    assert merged["metadata"]["annotations"] == {"note": "kept"}
    assert [r["uid"] for r in merged["metadata"]["ownerReferences"]] == ["someone-else", "uid-1"]


def test_owned_by() -> None:
    assert apply.owned_by(_live(apply.desired(_deployment(), DEPLOYMENTS, owner=OWNER, work="w")), "uid-1")
    assert not apply.owned_by({"metadata": {}}, "uid-1")
    assert not apply.owned_by(None, "uid-1")
