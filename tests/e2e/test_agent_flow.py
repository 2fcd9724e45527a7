"""The seed README's flow as a user runs it, with the real agent on a real cluster: a hub process (PostgreSQL,
Mosquitto), ``maestro agent`` as a process, resources posted over REST and gRPC, status read back over REST."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import grpc
import httpx

from protocol import events, grpc_codec, types
from protocol.grpc import cloudevent_pb2 as pb
from protocol.grpc import cloudevent_pb2_grpc as pb_grpc
from tests.e2e.agent_support import (
    AW_GROUP,
    configmap,
    deployment,
    feedback,
    is_true,
    ok,
    owner_kinds,
    wait_for,
    wait_gone,
    wait_kube,
)
from tests.e2e.conftest import KubectlRunner, StartAgent
from tests.e2e.hub_support import E2EHub


def _available(replicas: int) -> Any:
    def check(body: dict[str, Any]) -> bool:
        status = body.get("status") or {}
        content = status.get("ContentStatus") or {}
        conditions = (status.get("ReconcileStatus") or {}).get("Conditions") or []
        return content.get("availableReplicas") == replicas and all(
            is_true(conditions, c) for c in ("Applied", "Available", "StatusFeedbackSynced")
        )

    return check


async def test_readme_flow_foreground_then_orphan(
    e2e_hub: E2EHub, e2e_agent: StartAgent, rest: httpx.AsyncClient, kubectl: KubectlRunner, namespace: str
) -> None:
    await e2e_hub.create_consumer()
    await e2e_agent()

    # POST the nginx Deployment → it exists, owned by its AppliedWork; REST shows the seed's status shape.
    created = await ok(
        await rest.post(
            "/resources", json={"consumer_name": e2e_hub.consumer, "manifest": deployment("nginx", namespace)}
        ),
        201,
    )
    rid = created["id"]
    live = wait_kube(kubectl, lambda d: d is not None, "deployment", "nginx", "-n", namespace)
    assert live is not None
    refs = live["metadata"]["ownerReferences"]
    assert [(r["kind"], r["name"], r["apiVersion"]) for r in refs] == [("AppliedWork", rid, f"{AW_GROUP}/v1alpha1")]
    aw = wait_kube(kubectl, lambda a: a is not None, "appliedwork", rid)
    assert aw is not None
    assert refs[0]["uid"] == aw["metadata"]["uid"]
    body = await wait_for(rest, f"/resources/{rid}", _available(1))
    assert body["status"]["ReconcileStatus"]["ObservedVersion"] == 1

    # PATCH to 2 replicas → applied, ObservedVersion 2.
    patched = deployment("nginx", namespace, replicas=2)
    await ok(await rest.patch(f"/resources/{rid}", json={"version": 1, "manifest": patched}))
    body = await wait_for(
        rest, f"/resources/{rid}", lambda b: b["status"]["ReconcileStatus"]["ObservedVersion"] == 2 and _available(2)(b)
    )
    assert wait_kube(
        kubectl, lambda d: d is not None and d["spec"]["replicas"] == 2, "deployment", "nginx", "-n", namespace
    )

    # DELETE (Foreground) → the Deployment is gone before the resource leaves REST.
    await ok(await rest.delete(f"/resources/{rid}"), 204)
    await wait_gone(rest, f"/resources/{rid}")
    assert wait_kube(kubectl, lambda d: d is None, "deployment", "nginx", "-n", namespace, timeout=5) is None
    assert wait_kube(kubectl, lambda a: a is None, "appliedwork", rid, timeout=10) is None

    # The same with Orphan → the Deployment stays, without the owner reference.
    created = await ok(
        await rest.post(
            "/resources",
            json={
                "consumer_name": e2e_hub.consumer,
                "manifest": deployment("kept", namespace),
                "delete_option": {"propagationPolicy": "Orphan"},
            },
        ),
        201,
    )
    rid = created["id"]
    await wait_for(rest, f"/resources/{rid}", _available(1))
    await ok(await rest.delete(f"/resources/{rid}"), 204)
    await wait_gone(rest, f"/resources/{rid}")
    kept = wait_kube(kubectl, lambda d: d is not None and not owner_kinds(d), "deployment", "kept", "-n", namespace)
    assert kept is not None
    assert AW_GROUP + "/appliedwork" not in (kept["metadata"].get("labels") or {})


SEED_CONFIGS = [
    {
        "resourceIdentifier": {"group": "apps", "resource": "deployments", "name": "web", "namespace": "NS"},
        "feedbackRules": [{"type": "JSONPaths", "jsonPaths": [{"name": "status", "path": ".status"}]}],
        "updateStrategy": {"type": "ServerSideApply"},
    }
]


def _bundle_manifests(namespace: str) -> list[dict[str, Any]]:
    return [configmap("web-config", namespace), deployment("web", namespace)]


def _configs(namespace: str) -> list[dict[str, Any]]:
    return json.loads(json.dumps(SEED_CONFIGS).replace('"NS"', json.dumps(namespace)))


def _bundle_done(body: dict[str, Any]) -> bool:
    status = body.get("status") or {}
    resources = status.get("resourceStatus") or []
    return (
        is_true(status.get("conditions"), "Applied")
        and is_true(status.get("conditions"), "Available")
        and len(resources) == 2
        and feedback(resources[1], "status").get("availableReplicas") == 1
    )


def _check_bundle_status(body: dict[str, Any], namespace: str) -> None:
    resources = body["status"]["resourceStatus"]
    metas = [r["resourceMeta"] for r in resources]
    assert [(m["ordinal"], m["kind"], m["name"], m["namespace"]) for m in metas] == [
        (0, "ConfigMap", "web-config", namespace),
        (1, "Deployment", "web", namespace),
    ]
    assert metas[1]["group"] == "apps"
    assert metas[1]["resource"] == "deployments"
    assert metas[0]["resource"] == "configmaps"
    status = feedback(resources[1], "status")
    assert status["readyReplicas"] == 1
    assert status["replicas"] == 1
    assert all(is_true(r["conditions"], "Applied") for r in resources)


async def test_seed_bundle_via_rest_and_grpc(
    e2e_hub: E2EHub,
    e2e_agent: StartAgent,
    rest: httpx.AsyncClient,
    kubectl: KubectlRunner,
    namespace: str,
    tmp_path: Path,
) -> None:
    await e2e_hub.create_consumer()
    await e2e_agent()
    second = f"{namespace}-grpc"
    kubectl("create", "namespace", second)
    try:
        posted = await ok(
            await rest.post(
                "/resource-bundles",
                json={
                    "consumer_name": e2e_hub.consumer,
                    "manifests": _bundle_manifests(namespace),
                    "manifest_configs": _configs(namespace),
                },
            ),
            201,
        )
        body = await wait_for(rest, f"/resource-bundles/{posted['id']}", _bundle_done)
        _check_bundle_status(body, namespace)

        rid = str(uuid.uuid4())
        event = events.make_event(
            type=types.manifestbundle_type("spec", types.CREATE_REQUEST),
            source=e2e_hub.source,
            data={"manifests": _bundle_manifests(second), "manifestConfigs": _configs(second)},
            extensions={
                types.EXT_RESOURCE_ID: rid,
                types.EXT_RESOURCE_VERSION: 0,
                types.EXT_CLUSTER_NAME: e2e_hub.consumer,
            },
        )
        async with grpc.aio.insecure_channel(e2e_hub.grpc_target) as channel:
            stub = pb_grpc.CloudEventServiceStub(channel)  # type: ignore[no-untyped-call]
            await stub.Publish(pb.PublishRequest(event=grpc_codec.to_proto(event)))
        body = await wait_for(rest, f"/resource-bundles/{rid}", _bundle_done)
        _check_bundle_status(body, second)
        for rid_ in (posted["id"], rid):
            await ok(await rest.delete(f"/resource-bundles/{rid_}"), 204)
            await wait_gone(rest, f"/resource-bundles/{rid_}")
        assert wait_kube(kubectl, lambda d: d is None, "deployment", "web", "-n", second) is None
    finally:
        kubectl("delete", "namespace", second, "--wait=false", check=False)
