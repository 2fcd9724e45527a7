"""The agent's Helm chart (``charts/maestro-agent``) with a real helm and a real control plane.

- ``helm lint`` and ``helm template`` render; ``values.schema.json`` turns a missing ``consumerName`` or a
  misspelt key into an error;
- every rendered manifest passes ``kubectl apply --dry-run=server``;
- the chart's RBAC, created for real with the execution role bound to a narrow ClusterRole (ConfigMaps only),
  gives the ServiceAccount what the agent needs and no more (``kubectl auth can-i --as``);
- the real ``maestro agent``, authenticated as that ServiceAccount and started with the Deployment's arguments
  and the chart's broker config, applies a work without one forbidden call, and a kind the execution role does
  not allow is refused by the apiserver, not by the agent;
- the chart installed with ``helm install --wait``: the README's nginx walkthrough (``maestro resource apply
  --wait``, ``kubectl get aw``, ``maestro resource delete --wait``) passes with the release's ServiceAccount token
  and the execution role charts/README.md suggests, with one apply line in the agent's log;
- the chart's ClusterRole without ``patch``, or ``list``, on AppliedWorks: the agent exits 1 with one line naming it;
- every rendered object matches the Kubernetes OpenAPI schema of the cluster's version (offline, strict).

The Deployment itself is not run (no image on this cluster): the agent runs on the host as the chart's
ServiceAccount instead.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from protocol import mqtt_config
from tests.e2e.agent_support import AW_GROUP, configmap, deployment, is_true, ok, wait_for, wait_kube
from tests.e2e.conftest import KubectlRunner
from tests.e2e.hub_support import REPO_ROOT, AgentProcess, E2EHub, free_port
from tests.e2e.schema_support import cluster_version, schema_errors
from tests.fixtures.mosquitto import MQTTNames

CHART = REPO_ROOT / "charts" / "maestro-agent"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
AW = f"appliedworks.{AW_GROUP}"
CRD_NAME = AW


def helm(helm_bin: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([helm_bin, *args], capture_output=True, text=True, timeout=60)
    if check and res.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({res.returncode}):\n{res.stderr}{res.stdout}")
    return res


def sets(*pairs: str) -> list[str]:
    """``sets("a=1", "b=2")`` → ``["--set", "a=1", "--set", "b=2"]``."""
    return [arg for pair in pairs for arg in ("--set", pair)]


def render(helm_bin: str, release: str, namespace: str, *args: str) -> list[dict[str, Any]]:
    """``helm template`` → the rendered objects (``args``: ``--set``, ``--include-crds``, ...)."""
    out = helm(helm_bin, "template", release, str(CHART), "--namespace", namespace, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} rendered"
    return found[0]


def agent_args(objects: list[dict[str, Any]]) -> list[str]:
    container = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["maestro", "agent"]
    return list(container["args"])


def broker_config(objects: list[dict[str, Any]]) -> str:
    return str(find(objects, "Secret")["stringData"]["config.yaml"])


def release_name() -> str:
    return f"agent-{uuid.uuid4().hex[:6]}"


# -- rendering and the schema -----------------------------------------------------------------------------------


def test_lint(helm_bin: str) -> None:
    result = helm(helm_bin, "lint", "--strict", str(CHART), "--set", "consumerName=cluster1")
    assert "0 chart(s) failed" in result.stdout


def test_template_renders_the_agent(helm_bin: str) -> None:
    objects = render(helm_bin, "rel", "agents", *sets("consumerName=cluster1"))
    kinds = sorted((o["kind"], o["metadata"]["name"], o["metadata"].get("namespace", "")) for o in objects)
    assert kinds == [
        ("ClusterRole", "rel-maestro-agent:agent", ""),
        ("ClusterRoleBinding", "rel-maestro-agent:agent", ""),
        ("ClusterRoleBinding", "rel-maestro-agent:execution", ""),
        ("Deployment", "rel-maestro-agent", "agents"),
        ("Role", "rel-maestro-agent:agent", "agents"),
        ("Role", "rel-maestro-agent:events", "default"),
        ("RoleBinding", "rel-maestro-agent:agent", "agents"),
        ("RoleBinding", "rel-maestro-agent:events", "default"),
        ("Secret", "rel-maestro-agent-mqtt", "agents"),
        ("ServiceAccount", "rel-maestro-agent", "agents"),
    ]
    execution = find(objects, "ClusterRoleBinding", "rel-maestro-agent:execution")
    assert execution["roleRef"]["name"] == "cluster-admin"

    # The Deployment: one pod at a time, the agent's flags, probes on /healthz, a hardened container.
    dep = find(objects, "Deployment")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "rel-maestro-agent"
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["image"] == "quay.io/maestro-py/maestro:0.1.0"
    assert agent_args(objects) == [
        "--consumer-name=cluster1",
        "--workload-source-config=/secrets/mqtt/config.yaml",
        "--agent-namespace=$(POD_NAMESPACE)",
        "--cloudevents-client-id=cluster1-work-agent",
        "--source-id=maestro",
        "--status-sync-interval=10s",
        "--max-json-raw-length=1048576",
        "--appliedwork-eviction-grace-period=60m",
        "--kube-api-qps=50",
        "--kube-api-burst=100",
        "--workers=16",
        "--healthz-host=0.0.0.0",
        "--healthz-bindport=8083",
        "--log-level=info",
        "--install-crd",
    ]
    assert container["ports"] == [{"name": "http-health", "containerPort": 8083, "protocol": "TCP"}]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http-health"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"broker-config": "/secrets/mqtt", "tmp": "/tmp"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["broker-config"]["secret"]["secretName"] == "rel-maestro-agent-mqtt"
    assert "emptyDir" in volumes["tmp"]

    # The broker config is upstream's MQTT format, and the agent's own parser accepts it.
    config = mqtt_config.from_mapping(yaml.safe_load(broker_config(objects)))
    assert (config.host, config.port, config.protocol_version) == ("maestro-mqtt.maestro", 1883, 5)
    assert config.topics.source_events == "sources/maestro/consumers/cluster1/sourceevents"
    assert config.topics.agent_events == "sources/maestro/consumers/cluster1/agentevents"
    assert config.username is None
    assert not config.tls


NON_DEFAULT_VALUES: dict[str, Any] = {
    "consumerName": "edge-7",
    "sourceId": "hub-a",
    "cloudeventsClientId": "edge-7-agent",
    "installCRD": False,
    "messageBroker": {
        "mqtt": {
            "host": "broker.example.com",
            "port": 8883,
            "username": "edge-7",
            "password": "s3cret",
            "protocolVersion": 3,
            "existingTlsSecret": "broker-tls",
            "tlsKeys": {"ca": "ca.crt", "cert": "tls.crt", "key": "tls.key"},
        }
    },
    "rbac": {"executionClusterRole": "edge-deployer"},
    "serviceAccount": {"name": "edge-agent"},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "extraArgs": ["--kube-api-qps=5"],
}


def test_template_with_values(helm_bin: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(NON_DEFAULT_VALUES))
    objects = render(helm_bin, "maestro-agent", "edge", "-f", str(values))
    config = yaml.safe_load(broker_config(objects))
    assert config == {
        "brokerHost": "broker.example.com:8883",
        "username": "edge-7",
        "password": "s3cret",
        "protocolVersion": 3,
        "keepAlive": 60,
        "caFile": "/secrets/mqtt-tls/ca.crt",
        "clientCertFile": "/secrets/mqtt-tls/tls.crt",
        "clientKeyFile": "/secrets/mqtt-tls/tls.key",
        "topics": {
            "sourceEvents": "sources/hub-a/consumers/edge-7/sourceevents",
            "agentEvents": "sources/hub-a/consumers/edge-7/agentevents",
        },
    }
    args = agent_args(objects)
    assert "--cloudevents-client-id=edge-7-agent" in args
    assert "--source-id=hub-a" in args
    assert "--install-crd" not in args
    assert args[-1] == "--kube-api-qps=5"
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "edge-agent"
    assert {"name": "broker-tls", "secret": {"secretName": "broker-tls"}} in pod["volumes"]
    # A release named like the chart is not doubled ("maestro-agent:agent", upstream's names).
    agent_role = find(objects, "ClusterRole", "maestro-agent:agent")
    crd_rule = next(r for r in agent_role["rules"] if r.get("resourceNames") == [CRD_NAME])
    assert crd_rule["verbs"] == ["get"]  # no --install-crd: no right to write the CRD
    assert find(objects, "ClusterRoleBinding", "maestro-agent:execution")["roleRef"]["name"] == "edge-deployer"
    service = find(objects, "Service")
    assert service["spec"]["ports"] == [
        {"name": "http-metrics", "port": 8083, "targetPort": "http-health", "protocol": "TCP"}
    ]
    monitor = find(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "http-metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"

    # existingSecret: the chart writes no broker Secret and mounts the user's.
    objects = render(helm_bin, "r", "edge", *sets("consumerName=edge-7", "messageBroker.mqtt.existingSecret=my-mqtt"))
    assert not [o for o in objects if o["kind"] == "Secret"]
    volumes = find(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "broker-config", "secret": {"secretName": "my-mqtt"}} in volumes

    # No execution role: no execution binding.
    objects = render(helm_bin, "r", "edge", *sets("consumerName=edge-7", "rbac.executionClusterRole="))
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRoleBinding"] == ["r-maestro-agent:agent"]


BAD_VALUES = {
    "missing-consumer": ((), "/consumerName"),
    "typo-consumer": (("consumername=cluster1",), "consumername"),
    "bad-consumer": (("consumerName=Cluster_1",), "/consumerName"),
    "typo-nested": (("consumerName=c1", "messageBroker.mqtt.hots=broker"), "hots"),
    "duration": (("consumerName=c1", "statusSyncInterval=often"), "/statusSyncInterval"),
    "enum": (("consumerName=c1", "logLevel=verbose"), "/logLevel"),
    "typo-rbac": (("consumerName=c1", "rbac.executionRole=view"), "executionRole"),
    "type": (("consumerName=c1", "messageBroker.mqtt.port=http"), "/messageBroker/mqtt/port"),
    "tls-without-files": (
        ("consumerName=c1", "messageBroker.mqtt.existingTlsSecret=t", "messageBroker.mqtt.tlsKeys.ca="),
        "names neither a CA",
    ),
}


@pytest.mark.parametrize(("pairs", "error"), list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_bad_values_fail(helm_bin: str, pairs: tuple[str, ...], error: str) -> None:
    for command in ("template", "install"):
        extra = ["--dry-run=client"] if command == "install" else []
        result = helm(helm_bin, command, "rel", str(CHART), "--namespace", "agents", *extra, *sets(*pairs), check=False)
        assert result.returncode != 0, f"helm {command} accepted {pairs}:\n{result.stdout[:2000]}"
        assert error in result.stderr, result.stderr


SCHEMA_VALUE_SETS: dict[str, tuple[str, ...]] = {
    "defaults": ("consumerName=cluster1",),
    "metrics-service": ("consumerName=cluster1", "metrics.service.enabled=true", "metrics.serviceMonitor.enabled=true"),
    "no-crd-no-rbac": (
        "consumerName=cluster1", "installCRD=false", "rbac.create=false", "serviceAccount.create=false",
        "messageBroker.mqtt.existingTlsSecret=tls", "messageBroker.mqtt.tlsKeys.cert=tls.crt",
        "messageBroker.mqtt.tlsKeys.key=tls.key",
    ),
    "pod-settings": (
        "consumerName=cluster1", "resources.limits.cpu=1", "resources.requests.memory=64Mi",
        "nodeSelector.kubernetes\\.io/os=linux", "tolerations[0].key=edge", "tolerations[0].operator=Exists",
        "podAnnotations.a=b", "podLabels.team=edge", "priorityClassName=system-cluster-critical",
        "imagePullSecrets[0]=pull",
    ),
}  # fmt: skip


@pytest.mark.parametrize("pairs", list(SCHEMA_VALUE_SETS.values()), ids=list(SCHEMA_VALUE_SETS))
def test_rendered_objects_match_the_kubernetes_schema(helm_bin: str, pairs: tuple[str, ...]) -> None:
    """Offline, strict (unknown fields are errors), for the e2e cluster's Kubernetes version; CRD included."""
    objects = render(helm_bin, "rel", "agents", "--include-crds", *sets(*pairs))
    assert "CustomResourceDefinition" in {o["kind"] for o in objects} or "installCRD=false" in pairs
    assert not schema_errors(objects), f"Kubernetes {cluster_version()}:\n" + "\n".join(schema_errors(objects))


def test_rendered_non_default_values_match_the_kubernetes_schema(helm_bin: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(NON_DEFAULT_VALUES))
    assert not schema_errors(render(helm_bin, "maestro-agent", "edge", "--include-crds", "-f", str(values)))


def test_the_schema_check_catches_what_the_values_schema_lets_through(helm_bin: str) -> None:
    """``resources`` is passed through as given: a misspelt key renders, and only the Kubernetes schema sees it."""
    objects = render(helm_bin, "rel", "agents", *sets("consumerName=cluster1", "resources.limts.cpu=1"))
    assert schema_errors(objects) == [
        "Deployment rel-maestro-agent: spec.template.spec.containers.0.resources:"
        " Additional properties are not allowed ('limts' was unexpected)"
    ]


# -- against the cluster ----------------------------------------------------------------------------------------


def test_rendered_manifests_pass_server_dry_run(helm_bin: str, kubectl: KubectlRunner, namespace: str) -> None:
    """Everything but the ServiceMonitor (prometheus-operator's CRD is not on this cluster), CRD included."""
    for pairs in (
        ("metrics.service.enabled=true",),
        ("installCRD=false", "messageBroker.mqtt.existingTlsSecret=tls", "rbac.create=false"),
    ):
        out = helm(
            helm_bin, "template", release_name(), str(CHART), "--namespace", namespace, "--include-crds",
            *sets("consumerName=cluster1", *pairs),
        ).stdout  # fmt: skip
        kinds = [doc["kind"] for doc in yaml.safe_load_all(out) if doc]
        assert "CustomResourceDefinition" in kinds
        assert "Deployment" in kinds
        result = kubectl("apply", "--dry-run=server", "-f", "-", input=out)
        assert "(server dry run)" in result.stdout
        assert result.stdout.count("\n") == len(kinds), result.stdout


CONFIGMAPS_ONLY = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]
WORKLOAD_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]
DOCUMENTED_EXECUTION_ROLE = [
    # charts/README.md, "RBAC": "one that allows Deployments, Services and ConfigMaps only", with get, list and
    # watch besides the write verbs, and delete.
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": WORKLOAD_VERBS},
    {"apiGroups": [""], "resources": ["services", "configmaps"], "verbs": WORKLOAD_VERBS},
]


@contextlib.contextmanager
def rbac_of_the_chart(
    helm_bin: str,
    kubectl: KubectlRunner,
    namespace: str,
    execution_rules: list[dict[str, Any]],
    *,
    without_verb: str | None = None,
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The chart's CRD, ServiceAccount and (Cluster)Roles/Bindings created for real, the execution role
    bound to a ClusterRole with ``execution_rules`` (and ``without_verb`` taken out of the agent's own
    AppliedWork rule); yields ``(ServiceAccount name, rendered objects)`` once the apiserver's authorizer applies
    them. The cluster-scoped objects and those in ``default`` are deleted afterwards (the namespace goes with the
    ``namespace`` fixture)."""
    release = release_name()
    narrow = f"{release}-execution"
    objects = render(
        helm_bin,
        release,
        namespace,
        "--include-crds",
        *sets("consumerName=cluster1", f"rbac.executionClusterRole={narrow}"),
    )
    if without_verb is not None:
        rule = next(r for r in find(objects, "ClusterRole")["rules"] if r["resources"] == ["appliedworks"])
        rule["verbs"].remove(without_verb)
    execution_role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": narrow, "labels": {"app.kubernetes.io/instance": release}},
        "rules": execution_rules,
    }
    # NB: the CRD as helm installs it (crds/); it is shared by the session's agents and never deleted.
    created = [execution_role, *(o for o in objects if o["kind"] in {"CustomResourceDefinition", *RBAC_KINDS})]
    try:
        kubectl("apply", "-f", "-", input=yaml.safe_dump_all(created))
        sa = find(objects, "ServiceAccount")["metadata"]["name"]
        who = f"system:serviceaccount:{namespace}:{sa}"
        # NB: the authorizer sees new bindings through an informer, kubectl the CRD through discovery: wait until
        # both have caught up.
        assert wait_until(
            lambda: can_i(kubectl, who, "get", AW) and can_i(kubectl, who, "get", "secrets", "-n", namespace)
        )
        yield sa, objects
    finally:
        selector = f"app.kubernetes.io/instance={release}"
        kubectl("delete", "clusterrole,clusterrolebinding", "-l", selector, "--ignore-not-found", check=False)
        kubectl("delete", "role,rolebinding", "-n", "default", "-l", selector, "--ignore-not-found", check=False)


@pytest.fixture
def chart_rbac(helm_bin: str, kubectl: KubectlRunner, namespace: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """:func:`rbac_of_the_chart` with an execution role that only manages ConfigMaps."""
    with rbac_of_the_chart(helm_bin, kubectl, namespace, CONFIGMAPS_ONLY) as created:
        yield created


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def can_i(kubectl: KubectlRunner, who: str, *args: str) -> bool:
    result = kubectl("auth", "can-i", f"--as={who}", *args, check=False)
    answer = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert answer in ("yes", "no"), f"kubectl auth can-i {' '.join(args)}: {result.stdout}{result.stderr}"
    return answer == "yes"


def test_rbac_gives_the_agent_what_it_needs_and_no_more(
    kubectl: KubectlRunner, namespace: str, chart_rbac: tuple[str, list[dict[str, Any]]]
) -> None:
    sa, _ = chart_rbac
    who = f"system:serviceaccount:{namespace}:{sa}"
    allowed = [
        # AppliedWorks: kopf's list/watch and finaliser/annotation patches, the agent's apply, delete, status.
        *((verb, AW) for verb in ("get", "list", "watch", "create", "patch", "delete")),
        ("patch", AW, "--subresource=status"),
        ("update", AW, "--subresource=finalizers"),
        # Its CRD: read, and install/update it (--install-crd); kopf watches CRDs.
        ("get", f"customresourcedefinitions/{CRD_NAME}"),
        ("patch", f"customresourcedefinitions/{CRD_NAME}"),
        ("create", f"customresourcedefinitions/{CRD_NAME}"),
        ("list", "customresourcedefinitions"),
        ("watch", "customresourcedefinitions"),
        # Events of the cluster-scoped AppliedWorks live in default.
        ("create", "events", "-n", "default"),
        # Payload Secrets in its own namespace.
        *((verb, "secrets", "-n", namespace) for verb in ("get", "create", "patch")),
        # The execution role of this test: ConfigMaps, anywhere.
        *((verb, "configmaps", "-n", namespace) for verb in ("get", "list", "watch", "create", "update", "delete")),
        ("list", "configmaps", "--all-namespaces"),
    ]
    denied = [
        # No Secret outside its namespace, and no listing of them even inside it.
        ("get", "secrets", "-n", "default"),
        ("get", "secrets", "-n", "kube-system"),
        ("list", "secrets", "--all-namespaces"),
        ("list", "secrets", "-n", namespace),
        ("delete", "secrets", "-n", namespace),
        # No other CRD written, no other kind than the execution role's.
        ("patch", "customresourcedefinitions/other.example.com"),
        ("delete", f"customresourcedefinitions/{CRD_NAME}"),
        ("create", "deployments.apps", "-n", namespace),
        ("get", "pods", "-n", namespace),
        ("create", "events", "-n", "kube-system"),
        ("update", AW),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("impersonate", "serviceaccounts"),
        ("*", "*", "--all-namespaces"),
    ]
    wrong = [" ".join(a) + " (denied)" for a in allowed if not can_i(kubectl, who, *a)]
    wrong += [" ".join(a) + " (allowed)" for a in denied if can_i(kubectl, who, *a)]
    assert not wrong, f"{who}:\n" + "\n".join(wrong)


def sa_kubeconfig(kubectl: KubectlRunner, namespace: str, sa: str, path: Path) -> Path:
    """A kubeconfig for the same apiserver that authenticates as the ServiceAccount (a bound token)."""
    admin = json.loads(kubectl("config", "view", "--minify", "--raw", "-o", "json").stdout)
    cluster = admin["clusters"][0]["cluster"]
    token = kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()
    ca = path.with_suffix(".ca.crt")
    if "certificate-authority-data" in cluster:
        ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    else:
        ca.write_bytes(Path(cluster["certificate-authority"]).read_bytes())
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "e2e", "cluster": {"server": cluster["server"], "certificate-authority": str(ca)}}
                ],
                "users": [{"name": sa, "user": {"token": token}}],
                "contexts": [{"name": sa, "context": {"cluster": "e2e", "user": sa, "namespace": namespace}}],
                "current-context": sa,
            }
        )
    )
    return path


def chart_agent(
    helm_bin: str,
    kubectl: KubectlRunner,
    namespace: str,
    sa: str,
    hub: E2EHub,
    mqtt_names: MQTTNames,
    tmp_path: Path,
) -> AgentProcess:
    """``maestro agent`` (not started) with the chart's broker config and Deployment flags for this hub, as the
    pod would run it, authenticated with a token of the chart's ServiceAccount ``sa``."""
    objects = render(
        helm_bin,
        "live",
        namespace,
        *sets(
            f"consumerName={hub.consumer}",
            f"sourceId={hub.source}",
            f"messageBroker.mqtt.host={hub.broker_host}",
            f"messageBroker.mqtt.port={hub.broker_port}",
            f"cloudeventsClientId={mqtt_names.client_id('agent')}",
        ),
    )
    config = tmp_path / "mqtt" / "config.yaml"
    config.parent.mkdir(exist_ok=True)
    config.write_text(broker_config(objects))
    pod_only = ("--workload-source-config=", "--agent-namespace=", "--healthz-host=", "--healthz-bindport=")
    args = [a for a in agent_args(objects) if not a.startswith(pod_only)]
    assert "--install-crd" in args
    return AgentProcess(
        consumer=hub.consumer,
        workload_source_config=config,
        kubeconfig=sa_kubeconfig(kubectl, namespace, sa, tmp_path / "sa.kubeconfig"),
        agent_namespace=namespace,
        client_id=mqtt_names.client_id("agent"),
        log=tmp_path / "agent.log",
        extra_args=args,
    )


FORBIDDEN_MARKERS = ("Forbidden", "forbidden", "Not enough permissions", "could not post event", "watch of")


async def test_agent_runs_with_the_chart_rbac(
    helm_bin: str,
    kubectl: KubectlRunner,
    namespace: str,
    chart_rbac: tuple[str, list[dict[str, Any]]],
    e2e_hub: E2EHub,
    mqtt_names: MQTTNames,
    tmp_path: Path,
) -> None:
    sa, _ = chart_rbac
    agent = chart_agent(helm_bin, kubectl, namespace, sa, e2e_hub, mqtt_names, tmp_path)
    await e2e_hub.create_consumer()
    agent.start()
    try:
        await agent.wait_healthy(60)
        async with e2e_hub.rest() as rest:
            # A ConfigMap (allowed by this test's execution role): applied, its payload Secret written in the
            # agent's namespace, an Event posted in default, not one forbidden call in the agent's log.
            body = {"consumer_name": e2e_hub.consumer, "manifests": [configmap("allowed", namespace)]}
            rid = (await ok(await rest.post("/resource-bundles", json=body), 201))["id"]
            await wait_for(rest, f"/resource-bundles/{rid}", _applied)
            assert wait_kube(kubectl, lambda c: c is not None, "configmap", "allowed", "-n", namespace)
            assert wait_kube(kubectl, lambda s: s is not None, "secret", f"work-{rid}", "-n", namespace)
            events = wait_kube(
                kubectl,
                lambda e: bool(e and e["items"]),
                "events", "-n", "default", "--field-selector", f"involvedObject.name={rid},reason=Applied",
            )  # fmt: skip
            assert events is not None
            log = agent.output()
            assert not [line for line in log.splitlines() if any(m in line for m in FORBIDDEN_MARKERS)], agent.tail()

            # A Deployment (not allowed): the apiserver refuses the apply, and the work says so.
            body = {"consumer_name": e2e_hub.consumer, "manifests": [deployment("denied", namespace)]}
            denied = (await ok(await rest.post("/resource-bundles", json=body), 201))["id"]
            aw = wait_kube(kubectl, lambda a: _failed(a) is not None, AW, denied)
            assert aw is not None
            assert "forbidden" in str(_failed(aw)), json.dumps(aw.get("status"), indent=1)

            # Deletes go through: the finaliser removes the ConfigMap, the works and payload Secrets go.
            for work in (rid, denied):
                await ok(await rest.delete(f"/resource-bundles/{work}"), 204)
            for work in (rid, denied):
                assert wait_kube(kubectl, lambda a: a is None, AW, work) is None
            assert wait_kube(kubectl, lambda c: c is None, "configmap", "allowed", "-n", namespace) is None
    finally:
        code = agent.stop()
    assert code == 0, agent.tail()


@contextlib.contextmanager
def installed_agent_chart(
    helm_bin: str,
    kubectl: KubectlRunner,
    kubeconfig: str,
    namespace: str,
    hub: E2EHub,
    mqtt_names: MQTTNames,
    execution_rules: list[dict[str, Any]],
) -> Iterator[str]:
    """``helm install --wait`` of the agent chart for this hub (kwok plays the kubelet: the pod runs nothing), its
    execution role a ClusterRole with ``execution_rules``; yields the release's ServiceAccount once the authorizer
    grants its rights. ``helm uninstall`` afterwards (the CRD stays, as helm leaves crds/)."""
    release = release_name()
    execution = f"{release}-execution"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": execution},
        "rules": execution_rules,
    }
    common = ["--namespace", namespace, "--kubeconfig", kubeconfig]
    kubectl("apply", "-f", "-", input=yaml.safe_dump(role))
    try:
        values = sets(
            f"consumerName={hub.consumer}",
            f"sourceId={hub.source}",
            f"messageBroker.mqtt.host={hub.broker_host}",
            f"messageBroker.mqtt.port={hub.broker_port}",
            f"cloudeventsClientId={mqtt_names.client_id('agent')}",
            f"rbac.executionClusterRole={execution}",
        )
        helm(helm_bin, "install", release, str(CHART), *common, "--wait", "--timeout", "120s", *values)
        try:
            sa = f"{release}-maestro-agent"
            who = f"system:serviceaccount:{namespace}:{sa}"
            assert wait_until(lambda: can_i(kubectl, who, "patch", AW) and can_i(kubectl, who, "watch", "deployments"))
            yield sa
        finally:
            helm(helm_bin, "uninstall", release, *common, check=False)
    finally:
        kubectl("delete", "clusterrole", execution, "--ignore-not-found", check=False)


async def test_seed_flow_with_the_installed_chart_and_the_documented_execution_role(
    helm_bin: str,
    kubectl: KubectlRunner,
    kubeconfig: str,
    namespace: str,
    e2e_hub: E2EHub,
    mqtt_names: MQTTNames,
    tmp_path: Path,
) -> None:
    """The README's walkthrough on this cluster: the agent chart installed with ``helm install``, and the nginx
    Deployment applied with ``maestro resource apply --wait`` by an agent that runs with that release's
    ServiceAccount token: exactly the chart's rights plus the execution role charts/README.md suggests."""
    nginx = tmp_path / "nginx.yaml"
    nginx.write_text(yaml.safe_dump(deployment("nginx", namespace)))
    chart = installed_agent_chart(
        helm_bin, kubectl, kubeconfig, namespace, e2e_hub, mqtt_names, DOCUMENTED_EXECUTION_ROLE
    )
    with chart as sa:
        agent = chart_agent(helm_bin, kubectl, namespace, sa, e2e_hub, mqtt_names, tmp_path)
        await e2e_hub.create_consumer()
        agent.start()
        try:
            await agent.wait_healthy(60)
            applied = maestro_cli(e2e_hub, "resource", "apply", "-f", str(nginx), "--consumer", e2e_hub.consumer,
                                  "--wait", "--timeout", "2m", "-o", "json")  # fmt: skip
            assert applied.returncode == 0, applied.stderr + agent.tail()
            resource = json.loads(applied.stdout)
            rid = resource["id"]
            works = json.loads(kubectl("get", "aw", "-o", "json").stdout)["items"]
            assert rid in [w["metadata"]["name"] for w in works]
            nginx_deployment = wait_kube(kubectl, lambda d: d is not None, "deployment", "nginx", "-n", namespace)
            assert nginx_deployment is not None
            # The agent's log: one INFO line for this apply, naming its consumer; not one forbidden call.
            log = agent.output()
            applies = re.findall(rf"^.* INFO \S+ agent\.reconcile: work {rid}: .*$", log, re.MULTILINE)
            assert [line.split(" ", 3)[3] for line in applies] == [
                f"{e2e_hub.consumer} agent.reconcile: work {rid}: version 1, 1 manifests: applied"
            ], agent.tail()
            assert not [line for line in log.splitlines() if any(m in line for m in FORBIDDEN_MARKERS)], agent.tail()

            deleted = maestro_cli(e2e_hub, "resource", "delete", rid, "--wait", "--timeout", "2m")
            assert deleted.returncode == 0, deleted.stderr + agent.tail()
            assert wait_kube(kubectl, lambda d: d is None, "deployment", "nginx", "-n", namespace) is None
            assert wait_kube(kubectl, lambda a: a is None, AW, rid) is None
        finally:
            code = agent.stop()
        assert code == 0, agent.tail()
        # Nothing went wrong, so the log says nothing is wrong: no ERROR or WARNING (kopf's planned retries while
        # the Deployment is deleted are DEBUG), and none of kopf's start-up narration.
        lines = agent.output().splitlines()
        assert not [line for line in lines if " ERROR " in line or " WARNING " in line], agent.tail()
        assert not [line for line in lines if "authentication" in line], agent.tail()


def maestro_cli(hub: E2EHub, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``maestro`` CLI against the hub (as the README runs it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAESTRO_")}
    env["MAESTRO_REST_URL"] = hub.api.removesuffix("/api/maestro/v1")
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args], capture_output=True, text=True, env=env, timeout=180
    )


@pytest.mark.parametrize("verb", ["patch", "list"])
def test_agent_without_a_right_it_needs_stops_with_one_line(
    helm_bin: str, kubectl: KubectlRunner, namespace: str, mqtt_names: MQTTNames, tmp_path: Path, verb: str
) -> None:
    """The chart's ClusterRole with one AppliedWork verb taken out: the agent names it at start and exits 1,
    instead of running with kopf or the apply failing on 403s in its log."""
    config = tmp_path / "mqtt.yaml"
    config.write_text(
        f"brokerHost: 127.0.0.1:{free_port()}\n"
        "topics:\n"
        "  sourceEvents: sources/maestro/consumers/cluster1/sourceevents\n"
        "  agentEvents: sources/maestro/consumers/cluster1/agentevents\n"
    )
    with rbac_of_the_chart(helm_bin, kubectl, namespace, CONFIGMAPS_ONLY, without_verb=verb) as (sa, _):
        agent = AgentProcess(
            consumer="cluster1",
            workload_source_config=config,
            kubeconfig=sa_kubeconfig(kubectl, namespace, sa, tmp_path / "sa.kubeconfig"),
            agent_namespace=namespace,
            client_id=mqtt_names.client_id("agent"),
            log=tmp_path / "agent.log",
        )
        agent.start()
        assert agent.process is not None
        code = agent.process.wait(timeout=60)
    assert code == 1, agent.tail()
    errors = [line for line in agent.output().splitlines() if not re.match(r"^\d{4}-\d\d-\d\d ", line)]
    assert errors == [
        f"maestro agent: RBAC does not let the agent {verb} appliedworks.work.maestro-py.io: grant the"
        " maestro-agent chart's ClusterRole and Role (charts/README.md, RBAC)"
    ]


def _applied(body: dict[str, Any]) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    return is_true(conditions, "Applied")


def _failed(aw: dict[str, Any] | None) -> str | None:
    """The Applied=False message of the AppliedWork's only manifest, once there is one."""
    for entry in ((aw or {}).get("status") or {}).get("manifests") or []:
        for condition in entry.get("conditions") or []:
            if condition.get("type") == "Applied" and condition.get("status") == "False":
                return str(condition.get("message", ""))
    return None
