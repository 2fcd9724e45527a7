"""What a cluster owner sees: ``kubectl get aw`` columns, ``kubectl describe`` conditions and Events, no Secret data
in AppliedWorks, ``maestro agent --help``, and startup problems as one clear line with exit code 1."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e.agent_support import configmap, is_true, ok, wait_for
from tests.e2e.conftest import KubectlRunner, StartAgent
from tests.e2e.hub_support import REPO_ROOT, AgentProcess, E2EHub

PASSWORD = "s3cr3t-hunter2-value"


async def test_kubectl_views_and_no_secret_data_in_appliedworks(
    e2e_hub: E2EHub, e2e_agent: StartAgent, rest: httpx.AsyncClient, kubectl: KubectlRunner, namespace: str
) -> None:
    await e2e_hub.create_consumer()
    agent = await e2e_agent()
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": namespace},
        "stringData": {"password": PASSWORD},
    }
    created = await ok(
        await rest.post(
            "/resource-bundles",
            json={"consumer_name": e2e_hub.consumer, "manifests": [secret, configmap("settings", namespace)]},
        ),
        201,
    )
    rid = created["id"]
    await wait_for(rest, f"/resource-bundles/{rid}", lambda b: is_true(b["status"]["conditions"], "Available"))

    table = kubectl("get", "aw", rid).stdout.splitlines()
    assert table[0].split() == ["NAME", "VERSION", "APPLIED", "AVAILABLE", "MANIFESTS", "AGE"]
    assert table[1].split()[:5] == [rid, "1", "True", "True", "2/2"]

    described = kubectl("describe", "appliedwork", rid).stdout
    for text in ("Conditions:", "AppliedManifestWorkComplete", "ResourcesAvailable", "Events:", "Applied"):
        assert text in described, described

    as_yaml = kubectl("get", "aw", rid, "-o", "yaml").stdout
    encoded = base64.b64encode(PASSWORD.encode()).decode()
    assert PASSWORD not in as_yaml
    assert encoded not in as_yaml
    assert "kind: Secret" in as_yaml  # its identity is shown, not its data
    payload = json.loads(kubectl("get", "secret", f"work-{rid}", "-n", agent.agent_namespace, "-o", "json").stdout)
    assert [r["kind"] for r in payload["metadata"]["ownerReferences"]] == ["AppliedWork"]
    assert get_secret_value(kubectl, namespace) == PASSWORD


def get_secret_value(kubectl: KubectlRunner, namespace: str) -> str:
    data = json.loads(kubectl("get", "secret", "db", "-n", namespace, "-o", "json").stdout)["data"]
    return base64.b64decode(data["password"]).decode()


def _run_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "agent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )


def test_help_and_startup_errors(tmp_path: Path, kubeconfig: str, e2e_hub: E2EHub) -> None:
    helped = _run_agent("--help")
    assert helped.returncode == 0
    for flag in ("--consumer-name", "--workload-source-config", "--status-sync-interval", "--install-crd"):
        assert flag in helped.stdout

    broker = e2e_hub.agent_mqtt_config(tmp_path / "mqtt.yaml")
    common = ("--consumer-name", e2e_hub.consumer, "--agent-namespace", "default", "--healthz-bindport", "0")

    bad_broker = tmp_path / "bad.yaml"
    bad_broker.write_text("brokerHost: [not, a, host]\n")
    result = _run_agent(*common, "--workload-source-config", str(bad_broker), "--kubeconfig", kubeconfig)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith(f"maestro agent: bad broker config {bad_broker}"), result.stderr

    config = json.loads(json.dumps(_yaml(kubeconfig)))
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = "https://127.0.0.1:1"
    unreachable = tmp_path / "unreachable.kubeconfig"
    unreachable.write_text(json.dumps(config))
    result = _run_agent(*common, "--workload-source-config", str(broker), "--kubeconfig", str(unreachable))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "cannot reach the Kubernetes API server at https://127.0.0.1:1" in result.stderr, result.stderr


def _yaml(path: str) -> object:
    import yaml

    return yaml.safe_load(Path(path).read_text())


async def test_missing_crd_is_a_clear_error(
    e2e_hub: E2EHub, kubeconfig: str, kubectl: KubectlRunner, tmp_path: Path
) -> None:
    """Without ``--install-crd`` the CRD must exist. The test removes it (after freeing what earlier tests left)."""
    listing = json.loads(kubectl("get", "appliedworks", "-o", "json", check=False).stdout or '{"items": []}')
    for item in listing.get("items", []):
        kubectl(
            "patch", "appliedwork", item["metadata"]["name"], "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
        )
    kubectl("delete", "crd", "appliedworks.work.maestro-py.io", "--ignore-not-found", "--wait=true")
    agent = AgentProcess(
        consumer=e2e_hub.consumer,
        workload_source_config=e2e_hub.agent_mqtt_config(tmp_path / "mqtt.yaml"),
        kubeconfig=kubeconfig,
        agent_namespace="default",
        client_id=f"{e2e_hub.consumer}-nocrd",
        log=tmp_path / "agent.log",
    )
    agent.argv.remove("--install-crd")
    agent.start()
    assert agent.process is not None
    assert agent.process.wait(timeout=60) == 1
    lines = [line for line in agent.output().splitlines() if line.startswith("maestro agent:")]
    assert lines == [
        "maestro agent: the AppliedWork CRD (appliedworks.work.maestro-py.io) is not installed: install it with the "
        "agent's Helm chart or start the agent once with --install-crd"
    ], agent.output()
