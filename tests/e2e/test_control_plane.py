"""Checks that the e2e control plane is a real Kubernetes: CRDs, Ready Deployments, GC, SSA, helm, kubectl."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio.client.exceptions import ApiException

KubectlRunner = Callable[..., subprocess.CompletedProcess[str]]

GROUP = "e2e.maestro.io"
TIMEOUT = 60.0
# The stubs of kubernetes_asyncio omit _content_type; a dict body would otherwise be sent as a JSON patch.
MERGE_PATCH: dict[str, Any] = {"_content_type": "application/merge-patch+json"}


async def eventually(check: Callable[[], Awaitable[bool]], what: str, limit: float = TIMEOUT) -> None:
    """Poll ``check`` until it returns True, failing with ``what`` after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {limit:.0f}s waiting for {what}")
        await asyncio.sleep(0.25)


async def gone(read: Callable[[], Awaitable[Any]]) -> bool:
    try:
        await read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


# -- CRD with a status subresource -------------------------------------------------------------------------


@pytest.fixture
def widget_crd(kubectl: KubectlRunner) -> Iterator[str]:
    """A namespaced CRD with a status subresource; a unique plural per test, deleted afterwards."""
    plural = f"widgets{uuid.uuid4().hex[:8]}"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": f"W{plural[1:-1]}"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                                "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                            },
                        }
                    },
                }
            ],
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(crd))
    kubectl("wait", "--for=condition=Established", f"crd/{plural}.{GROUP}", "--timeout=60s")
    yield plural
    kubectl("delete", "crd", f"{plural}.{GROUP}", "--wait=false", check=False)


async def test_crd_custom_resource_and_status_subresource(
    k8s_api: k8s_client.ApiClient, namespace: str, widget_crd: str
) -> None:
    api = k8s_client.CustomObjectsApi(k8s_api)
    kind = f"W{widget_crd[1:-1]}"
    body = {"apiVersion": f"{GROUP}/v1", "kind": kind, "metadata": {"name": "w1"}, "spec": {"size": 3}}

    # Discovery can lag a moment behind Established.
    async def create() -> bool:
        try:
            await api.create_namespaced_custom_object(GROUP, "v1", namespace, widget_crd, body)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    await eventually(create, "the custom resource to be served")

    obj = await api.get_namespaced_custom_object(GROUP, "v1", namespace, widget_crd, "w1")
    assert obj["spec"] == {"size": 3}
    assert "status" not in obj

    # The main resource ignores status; the status subresource ignores spec.
    await api.patch_namespaced_custom_object(
        GROUP,
        "v1",
        namespace,
        widget_crd,
        "w1",
        {"status": {"phase": "Ignored"}},
        **MERGE_PATCH,
    )
    obj = await api.get_namespaced_custom_object(GROUP, "v1", namespace, widget_crd, "w1")
    assert "status" not in obj

    patched = await api.patch_namespaced_custom_object_status(
        GROUP,
        "v1",
        namespace,
        widget_crd,
        "w1",
        {"status": {"phase": "Ready"}, "spec": {"size": 99}},
        **MERGE_PATCH,
    )
    assert patched["status"] == {"phase": "Ready"}
    obj = await api.get_namespaced_custom_object(GROUP, "v1", namespace, widget_crd, "w1")
    assert obj["status"] == {"phase": "Ready"}
    assert obj["spec"] == {"size": 3}
    listed = await api.list_namespaced_custom_object(GROUP, "v1", namespace, widget_crd)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["w1"]


# -- Deployment -> ReplicaSet -> Pod (scheduler) -> Ready (kwok) -------------------------------------------


async def test_deployment_becomes_available_with_ready_pods(k8s_api: k8s_client.ApiClient, namespace: str) -> None:
    apps = k8s_client.AppsV1Api(k8s_api)
    core = k8s_client.CoreV1Api(k8s_api)
    labels = {"app": "web"}
    deployment: Any = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
            },
        },
    }
    await apps.create_namespaced_deployment(namespace, deployment)

    async def available() -> bool:
        dep = await apps.read_namespaced_deployment_status("web", namespace)
        return dep.status.available_replicas == 1

    await eventually(available, "deployment web to have availableReplicas: 1")

    pods = (await core.list_namespaced_pod(namespace, label_selector="app=web")).items
    assert len(pods) == 1
    pod = pods[0]
    assert pod.spec.node_name, "pod was not scheduled"
    assert pod.status.phase == "Running"
    ready = {c.type: c.status for c in pod.status.conditions or []}
    assert ready.get("Ready") == "True", ready
    owner = pod.metadata.owner_references[0]
    assert owner.kind == "ReplicaSet"
    assert owner.controller


# -- garbage collector -------------------------------------------------------------------------------------


async def _owner_and_dependent(core: k8s_client.CoreV1Api, namespace: str, prefix: str) -> None:
    owner_body: Any = {"metadata": {"name": f"{prefix}-owner"}, "data": {"role": "owner"}}
    owner = await core.create_namespaced_config_map(namespace, owner_body)
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": owner.metadata.name,
        "uid": owner.metadata.uid,
        "blockOwnerDeletion": True,
    }
    dependent: Any = {
        "metadata": {"name": f"{prefix}-dependent", "ownerReferences": [ref]},
        "data": {"role": "dep"},
    }
    await core.create_namespaced_config_map(namespace, dependent)


async def test_garbage_collector_foreground_and_orphan(k8s_api: k8s_client.ApiClient, namespace: str) -> None:
    core = k8s_client.CoreV1Api(k8s_api)

    # Foreground: the dependent goes first, then the owner.
    await _owner_and_dependent(core, namespace, "fg")
    await core.delete_namespaced_config_map(
        "fg-owner", namespace, body=k8s_client.V1DeleteOptions(propagation_policy="Foreground")
    )
    await eventually(
        lambda: gone(lambda: core.read_namespaced_config_map("fg-dependent", namespace)),
        "fg-dependent deleted",
    )
    await eventually(lambda: gone(lambda: core.read_namespaced_config_map("fg-owner", namespace)), "fg-owner deleted")

    # Orphan: the owner goes, the dependent stays with its owner reference removed.
    await _owner_and_dependent(core, namespace, "or")
    await core.delete_namespaced_config_map(
        "or-owner", namespace, body=k8s_client.V1DeleteOptions(propagation_policy="Orphan")
    )
    await eventually(lambda: gone(lambda: core.read_namespaced_config_map("or-owner", namespace)), "or-owner deleted")
    dependent = await core.read_namespaced_config_map("or-dependent", namespace)
    assert not dependent.metadata.owner_references
    assert dependent.metadata.deletion_timestamp is None


# -- server-side apply -------------------------------------------------------------------------------------


def test_server_side_apply_conflict_and_force(kubectl: KubectlRunner, namespace: str) -> None:
    def manifest(value: str) -> str:
        return json.dumps(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa", "namespace": namespace},
             "data": {"key": value}}
        )  # fmt: skip

    kubectl("apply", "--server-side", "--field-manager=alpha", "-f", "-", input=manifest("a"))
    # Same value from another manager: no conflict, shared ownership.
    kubectl("apply", "--server-side", "--field-manager=beta", "-f", "-", input=manifest("a"))
    conflict = kubectl("apply", "--server-side", "--field-manager=beta", "-f", "-", input=manifest("b"), check=False)
    assert conflict.returncode != 0
    assert "conflict" in conflict.stderr.lower(), conflict.stderr
    assert "alpha" in conflict.stderr, conflict.stderr
    assert json.loads(kubectl("get", "configmap", "ssa", "-n", namespace, "-o", "json").stdout)["data"] == {"key": "a"}

    kubectl("apply", "--server-side", "--field-manager=beta", "--force-conflicts", "-f", "-", input=manifest("b"))
    cm = json.loads(kubectl("get", "configmap", "ssa", "-n", namespace, "-o", "json", "--show-managed-fields").stdout)
    assert cm["data"] == {"key": "b"}
    owners = {
        entry["manager"]
        for entry in cm["metadata"]["managedFields"]
        if "f:key" in entry.get("fieldsV1", {}).get("f:data", {})
    }
    assert owners == {"beta"}


# -- helm and kubectl --------------------------------------------------------------------------------------


def test_helm_and_kubectl_run(
    helm_bin: str, kubectl_bin: str, kubeconfig: str, kubectl: KubectlRunner, namespace: str, tmp_path: Path
) -> None:
    helm_version = subprocess.run([helm_bin, "version", "--short"], capture_output=True, text=True, check=True)
    assert helm_version.stdout.startswith("v"), helm_version.stdout
    client = subprocess.run([kubectl_bin, "version", "--client"], capture_output=True, text=True, check=True)
    assert "Client Version: v1." in client.stdout

    server = json.loads(kubectl("version", "-o", "json").stdout)
    assert server["serverVersion"]["major"] == "1"
    nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert any(c["type"] == "Ready" and c["status"] == "True" for n in nodes for c in n["status"].get("conditions", []))

    # helm talks to the cluster too: install a one-ConfigMap chart.
    chart = tmp_path / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: tiny\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\n"
        "data:\n  v: {{ .Values.v | quote }}\n"
    )
    subprocess.run(
        [
            helm_bin,
            "install",
            "rel",
            str(chart),
            "-n",
            namespace,
            f"--kubeconfig={kubeconfig}",
            "--set",
            "v=42",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    cm = json.loads(kubectl("get", "configmap", "rel-cm", "-n", namespace, "-o", "json").stdout)
    assert cm["data"] == {"v": "42"}
