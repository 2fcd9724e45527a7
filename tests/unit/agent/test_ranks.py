"""Apply order by kind rank, and delete order of applied resources."""

from __future__ import annotations

from typing import Any

from agent import ranks


def manifest(kind: str, name: str = "x", api_version: str = "v1") -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}


def test_crd_is_applied_before_its_custom_resource() -> None:
    widget = manifest("Widget", api_version="example.com/v1")
    crd = manifest("CustomResourceDefinition", "widgets.example.com", "apiextensions.k8s.io/v1")
    assert ranks.apply_order([widget, crd]) == [1, 0]


def test_namespace_is_applied_before_a_deployment_in_it() -> None:
    deployment = {**manifest("Deployment", api_version="apps/v1"), "metadata": {"name": "web", "namespace": "shop"}}
    assert ranks.apply_order([deployment, manifest("Namespace", "shop")]) == [1, 0]


def test_full_rank_chain() -> None:
    kinds = [
        "ValidatingWebhookConfiguration",
        "Deployment",
        "Service",
        "ConfigMap",
        "ServiceAccount",
        "RoleBinding",
        "Namespace",
    ]
    order = ranks.apply_order([manifest(kind) for kind in kinds])
    assert [kinds[i] for i in order] == list(reversed(kinds))


def test_equal_ranks_keep_spec_order() -> None:
    manifests = [manifest("Secret", "b"), manifest("ConfigMap", "a"), manifest("PersistentVolumeClaim", "c")]
    assert ranks.apply_order(manifests) == [0, 1, 2]


def test_rank_is_by_kind_only() -> None:
    # OCM looks kinds up without their group, so a custom "Service" ranks with the core one.
    assert ranks.rank(manifest("Service", api_version="serving.knative.dev/v1")) == ranks.rank(manifest("Service"))


def test_unknown_kinds_go_after_listed_ones_and_unreadable_manifests_last() -> None:
    manifests: list[Any] = ["not an object", {"metadata": {"name": "no-kind"}}, manifest("Widget"), manifest("Pod")]
    assert ranks.apply_order(manifests) == [3, 2, 0, 1]
    assert [ranks.rank(m) for m in manifests] == [1001, 1001, 1000, 5]


def test_empty_work_has_no_order() -> None:
    assert ranks.apply_order([]) == []


def test_delete_order_is_by_group_version_resource_namespace_name() -> None:
    applied = [
        {"group": "apps", "version": "v1", "resource": "deployments", "namespace": "shop", "name": "web"},
        {"group": "", "version": "v1", "resource": "services", "namespace": "shop", "name": "web"},
        {"group": "", "version": "v1", "resource": "namespaces", "namespace": "", "name": "shop"},
        {"group": "", "version": "v1", "resource": "configmaps", "namespace": "shop", "name": "b"},
        {"group": "", "version": "v1", "resource": "configmaps", "namespace": "shop", "name": "a"},
    ]
    assert ranks.delete_order(applied) == [4, 3, 2, 1, 0]
