"""How the agent applies: update strategies (an SSA conflict included), dependency order (a CRD and its custom
resource in one work), manifests the apiserver rejects, manifests dropped from a bundle, SelectivelyOrphan,
drift, an AppliedWork deleted by hand, and bad input sent straight over the broker."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from protocol import cloudevents_mqtt, events, mqtt, mqtt_config, types
from tests.e2e.agent_support import (
    condition,
    configmap,
    deployment,
    feedback,
    get_json,
    is_true,
    ok,
    owner_kinds,
    wait_for,
    wait_gone,
    wait_kube,
)
from tests.e2e.conftest import KubectlRunner, StartAgent
from tests.e2e.hub_support import E2EHub


def _config(kind_plural: str, name: str, namespace: str, strategy: dict[str, Any], group: str = "") -> dict[str, Any]:
    return {
        "resourceIdentifier": {"group": group, "resource": kind_plural, "name": name, "namespace": namespace},
        "updateStrategy": strategy,
    }


def _manifest_status(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in body["status"]["resourceStatus"] if r["resourceMeta"]["name"] == name)


def _applied(name: str) -> Any:
    return lambda b: is_true(_manifest_status(b, name)["conditions"], "Applied")


async def _bundle(rest: httpx.AsyncClient, consumer: str, manifests: list[Any], **extra: Any) -> str:
    body = {"consumer_name": consumer, "manifests": manifests, **extra}
    created = await ok(await rest.post("/resource-bundles", json=body), 201)
    return str(created["id"])


async def _replace(rest: httpx.AsyncClient, rid: str, version: int, manifests: list[Any], **extra: Any) -> None:
    body = {"version": version, "manifests": manifests, **extra}
    await ok(await rest.put(f"/resource-bundles/{rid}", json=body))


async def test_update_strategies_and_ssa_conflict(
    e2e_hub: E2EHub, e2e_agent: StartAgent, rest: httpx.AsyncClient, kubectl: KubectlRunner, namespace: str
) -> None:
    await e2e_hub.create_consumer()
    await e2e_agent()
    kubectl("create", "configmap", "existing", "-n", namespace, "--from-literal=a=1")
    kubectl("create", "service", "clusterip", "watched", "-n", namespace, "--tcp=80:8080")
    contested = configmap("contested", namespace, {"key": "theirs"})
    kubectl("apply", "--server-side", "--field-manager=other", "-f", "-", input=json.dumps(contested))
    before = {
        n: get_json(kubectl, kind, n, "-n", namespace)
        for kind, n in (("configmap", "existing"), ("service", "watched"))
    }

    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "watched", "namespace": namespace},
        "spec": {"ports": [{"port": 80}]},
    }
    manifests = [
        configmap("by-ssa", namespace),
        configmap("by-update", namespace),
        configmap("existing", namespace, {"a": "2"}),
        service,
        configmap("contested", namespace, {"key": "ours"}),
    ]
    configs = [
        _config("configmaps", "by-update", namespace, {"type": "Update"}),
        _config("configmaps", "existing", namespace, {"type": "CreateOnly"}),
        {
            **_config("services", "watched", namespace, {"type": "ReadOnly"}),
            "feedbackRules": [{"type": "JSONPaths", "jsonPaths": [{"name": "type", "path": ".spec.type"}]}],
        },
        _config(
            "configmaps",
            "contested",
            namespace,
            {"type": "ServerSideApply", "serverSideApply": {"fieldManager": "maestro-agent"}},
        ),
    ]
    rid = await _bundle(rest, e2e_hub.consumer, manifests, manifest_configs=configs)
    body = await wait_for(
        rest,
        f"/resource-bundles/{rid}",
        lambda b: (
            all(_applied(n)(b) for n in ("by-ssa", "by-update", "existing", "watched")) and not _applied("contested")(b)
        ),
    )

    # ServerSideApply: our field manager; Update: written with a plain update, owned by the work.
    ssa = get_json(kubectl, "configmap", "by-ssa", "-n", namespace, "--show-managed-fields")
    assert ssa is not None
    assert ("maestro-agent", "Apply") in [(f["manager"], f["operation"]) for f in ssa["metadata"]["managedFields"]]
    upd = get_json(kubectl, "configmap", "by-update", "-n", namespace, "--show-managed-fields")
    assert upd is not None
    assert "Update" in [f["operation"] for f in upd["metadata"]["managedFields"]]
    assert owner_kinds(upd) == ["AppliedWork"]
    # CreateOnly: the existing object is not touched; ReadOnly: never written, but reported with its feedback.
    for name in ("existing", "watched"):
        now = get_json(kubectl, "configmap" if name == "existing" else "service", name, "-n", namespace)
        assert now is not None
        assert before[name] is not None
        assert now["metadata"]["resourceVersion"] == before[name]["metadata"]["resourceVersion"], name
        assert not owner_kinds(now)
        assert is_true(_manifest_status(body, name)["conditions"], "Available")
    assert feedback(_manifest_status(body, "watched"), "type") == "ClusterIP"

    # An SSA conflict with another field manager: Applied=False naming that manager; the value stays theirs.
    message = condition(_manifest_status(body, "contested")["conditions"], "Applied")["message"]
    assert 'conflict with "other"' in message, message
    assert ".data.key" in message, message
    assert not is_true(body["status"]["conditions"], "Applied")
    assert (get_json(kubectl, "configmap", "contested", "-n", namespace) or {})["data"] == {"key": "theirs"}
    # ... and with force it is taken over.
    configs[-1]["updateStrategy"]["serverSideApply"]["force"] = True
    await _replace(rest, rid, 1, manifests, manifest_configs=configs)
    await wait_for(
        rest,
        f"/resource-bundles/{rid}",
        lambda b: b["status"]["ObservedVersion"] == 2 and is_true(b["status"]["conditions"], "Applied"),
    )
    assert (get_json(kubectl, "configmap", "contested", "-n", namespace) or {})["data"] == {"key": "ours"}

    await ok(await rest.delete(f"/resource-bundles/{rid}"), 204)
    await wait_gone(rest, f"/resource-bundles/{rid}")
    # Foreground delete removed what the work wrote, and nothing it did not write.
    assert get_json(kubectl, "configmap", "by-ssa", "-n", namespace) is None
    assert get_json(kubectl, "configmap", "existing", "-n", namespace) is not None
    assert get_json(kubectl, "service", "watched", "-n", namespace) is not None


def _crd(group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }


async def test_crd_rejects_drops_and_selective_orphan(
    e2e_hub: E2EHub, e2e_agent: StartAgent, rest: httpx.AsyncClient, kubectl: KubectlRunner, namespace: str
) -> None:
    await e2e_hub.create_consumer()
    await e2e_agent()
    group = f"e2e{uuid.uuid4().hex[:8]}.example.io"
    widget = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": namespace},
        "spec": {"size": 3},
    }
    bad = deployment("bad", namespace)
    bad["spec"]["replicas"] = -1
    unknown = {
        "apiVersion": "nothing.example.io/v1",
        "kind": "Gizmo",
        "metadata": {"name": "g", "namespace": namespace},
    }
    no_namespace = configmap("floating", namespace)
    del no_namespace["metadata"]["namespace"]
    # NB: the custom resource comes first in the bundle; the agent applies the CRD first and waits for it.
    manifests = [
        widget,
        configmap("keep", namespace),
        configmap("drop", namespace),
        bad,
        unknown,
        no_namespace,
        configmap("nowhere", f"{namespace}-missing"),
        _crd(group),
    ]
    rid = await _bundle(rest, e2e_hub.consumer, manifests)
    body = await wait_for(
        rest,
        f"/resource-bundles/{rid}",
        lambda b: b["status"]["ObservedVersion"] == 1 and len(b["status"]["resourceStatus"]) == 8,
    )

    for name in ("w1", "keep", "drop", f"widgets.{group}"):
        assert is_true(_manifest_status(body, name)["conditions"], "Applied"), name
    assert get_json(kubectl, f"widgets.{group}", "w1", "-n", namespace) is not None
    messages = {
        n: condition(_manifest_status(body, n)["conditions"], "Applied")["message"]
        for n in ("bad", "g", "floating", "nowhere")
    }
    assert "spec.replicas" in messages["bad"], messages
    assert "must be greater than or equal to 0" in messages["bad"], messages
    assert 'no matches for kind "Gizmo" in version "nothing.example.io/v1"' in messages["g"], messages
    assert "has no metadata.namespace" in messages["floating"], messages
    assert f'namespaces "{namespace}-missing" not found' in messages["nowhere"], messages
    assert condition(body["status"]["conditions"], "Applied")["reason"] == "AppliedManifestWorkFailed"

    # The bad ones fixed by dropping them, and "drop" dropped: it is deleted, the rest stays.
    manifests = [widget, configmap("keep", namespace), _crd(group)]
    orphaning = {"propagationPolicy": "SelectivelyOrphan", "selectivelyOrphans": {"orphaningRules": [
        {"group": "", "resource": "configmaps", "name": "keep", "namespace": namespace}]}}  # fmt: skip
    await _replace(rest, rid, 1, manifests, delete_option=orphaning)
    await wait_for(
        rest,
        f"/resource-bundles/{rid}",
        lambda b: b["status"]["ObservedVersion"] == 2 and is_true(b["status"]["conditions"], "Applied"),
    )
    assert wait_kube(kubectl, lambda o: o is None, "configmap", "drop", "-n", namespace) is None

    # SelectivelyOrphan: "keep" stays (no owner), the custom resource and the CRD go.
    await ok(await rest.delete(f"/resource-bundles/{rid}"), 204)
    await wait_gone(rest, f"/resource-bundles/{rid}")
    kept = get_json(kubectl, "configmap", "keep", "-n", namespace)
    assert kept is not None
    assert not owner_kinds(kept)
    assert get_json(kubectl, "customresourcedefinition", f"widgets.{group}") is None


async def test_drift_is_corrected_and_a_deleted_appliedwork_comes_back(
    e2e_hub: E2EHub, e2e_agent: StartAgent, rest: httpx.AsyncClient, kubectl: KubectlRunner, namespace: str
) -> None:
    await e2e_hub.create_consumer()
    agent = await e2e_agent()
    rid = await _bundle(rest, e2e_hub.consumer, [deployment("web", namespace), configmap("conf", namespace)])
    await wait_for(rest, f"/resource-bundles/{rid}", lambda b: is_true(b["status"]["conditions"], "Available"))

    kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=3")
    kubectl("patch", "configmap", "conf", "-n", namespace, "--type=merge", "-p", '{"data": {"key": "changed"}}')
    wait_kube(
        kubectl,
        lambda d: d is not None and d["spec"]["replicas"] == 1,
        "deployment",
        "web",
        "-n",
        namespace,
        timeout=10,
    )
    wait_kube(
        kubectl,
        lambda c: c is not None and c["data"]["key"] == "value",
        "configmap",
        "conf",
        "-n",
        namespace,
        timeout=10,
    )
    described = kubectl("describe", "appliedwork", rid).stdout
    assert "DriftCorrected" in described, described
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"http://127.0.0.1:{agent.healthz_port}/metrics")).text
    assert "maestro_agent_drift_corrected_total 2.0" in metrics

    # Deleted by hand while the hub still wants it: the objects stay, the AppliedWork comes back and owns them.
    before = get_json(kubectl, "appliedwork", rid)
    web = get_json(kubectl, "deployment", "web", "-n", namespace)
    assert before is not None
    assert web is not None
    kubectl("delete", "appliedwork", rid, "--wait=true")
    again = wait_kube(
        kubectl, lambda a: a is not None and a["metadata"]["uid"] != before["metadata"]["uid"], "appliedwork", rid
    )
    assert again is not None
    new_uid = again["metadata"]["uid"]
    now = wait_kube(
        kubectl,
        lambda d: d is not None and [r["uid"] for r in d["metadata"].get("ownerReferences", [])] == [new_uid],
        "deployment", "web", "-n", namespace,
    )  # fmt: skip
    assert now is not None
    assert now["metadata"]["uid"] == web["metadata"]["uid"]
    await wait_for(rest, f"/resource-bundles/{rid}", lambda b: is_true(b["status"]["conditions"], "Applied"))


async def test_bad_and_forged_input_from_the_broker(
    e2e_hub: E2EHub, e2e_agent: StartAgent, kubectl: KubectlRunner, namespace: str, rest: httpx.AsyncClient
) -> None:
    await e2e_hub.create_consumer()
    agent = await e2e_agent()
    config = mqtt_config.from_mapping(
        {
            "brokerHost": f"{e2e_hub.broker_host}:{e2e_hub.broker_port}",
            "topics": {
                "sourceEvents": f"sources/{e2e_hub.source}/consumers/+/sourceevents",
                "agentEvents": f"sources/{e2e_hub.source}/consumers/+/agentevents",
            },
        }
    )
    rid, forged_id = str(uuid.uuid4()), str(uuid.uuid4())
    event = events.make_event(
        type=types.manifestbundle_type("spec", types.CREATE_REQUEST),
        source=e2e_hub.source,
        data={"manifests": ["not an object", configmap("fine", namespace)]},
        extensions={
            types.EXT_RESOURCE_ID: rid,
            types.EXT_RESOURCE_VERSION: 1,
            types.EXT_CLUSTER_NAME: e2e_hub.consumer,
        },
    )
    async with mqtt.Broker(config, client_id=f"e2e-forger-{rid[:8]}") as broker:
        topic = f"sources/{e2e_hub.source}/consumers/{e2e_hub.consumer}/sourceevents"
        forged = events.make_event(
            type=types.manifestbundle_type("spec", types.CREATE_REQUEST),
            source="intruder",
            data={"manifests": [configmap("forged", namespace)]},
            extensions={
                types.EXT_RESOURCE_ID: forged_id,
                types.EXT_RESOURCE_VERSION: 1,
                types.EXT_CLUSTER_NAME: e2e_hub.consumer,
            },
        )
        await broker.publish(topic, cloudevents_mqtt.encode(forged, binary=True))
        await broker.publish(topic, cloudevents_mqtt.encode(event, binary=True))
        await broker.publish(topic, cloudevents_mqtt.MQTTMessage(payload=b"{not json"))
        await broker.drain(timeout=10)
    aw = wait_kube(kubectl, lambda a: a is not None and "manifests" in (a.get("status") or {}), "appliedwork", rid)
    assert aw is not None
    entries = {e["ordinal"]: e for e in aw["status"]["manifests"]}
    assert "not a Kubernetes object" in condition(entries[0]["conditions"], "Applied")["message"]
    assert is_true(entries[1]["conditions"], "Applied")
    assert get_json(kubectl, "configmap", "fine", "-n", namespace) is not None
    # A spec under another source than the hub's (anyone on the broker could send one) is dropped.
    assert get_json(kubectl, "appliedwork", forged_id) is None
    assert get_json(kubectl, "configmap", "forged", "-n", namespace) is None
    assert "from source 'intruder'" in agent.output()
    assert agent.running
    async with httpx.AsyncClient() as client:
        assert (await client.get(agent.healthz_url)).status_code == 200
    # Still serving the hub afterwards.
    created = await ok(
        await rest.post(
            "/resources", json={"consumer_name": e2e_hub.consumer, "manifest": configmap("after", namespace)}
        ),
        201,
    )
    await wait_for(
        rest, f"/resources/{created['id']}", lambda b: b["status"]["ReconcileStatus"]["ObservedVersion"] == 1
    )
