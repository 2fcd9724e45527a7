"""Crashes and restarts lose nothing and re-apply nothing: the agent SIGKILLed and started again, the broker
restarted, the hub SIGKILLed and started again. After each, what changed meanwhile is applied, and the objects
that did not change keep their resourceVersion (the agent wrote nothing to them)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.agent_support import configmap, deployment, get_json, is_true, ok, wait_for, wait_kube
from tests.e2e.conftest import KubectlRunner, StartAgent
from tests.e2e.hub_support import AgentProcess, E2EHub
from tests.fixtures.mosquitto import MosquittoServer


def _versions(kubectl: KubectlRunner, namespace: str) -> dict[str, str]:
    listing = get_json(kubectl, "configmaps,deployments", "-n", namespace, "-l", "work.maestro-py.io/appliedwork")
    assert listing is not None
    return {f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in listing["items"]}


async def _settled(rest: httpx.AsyncClient, rid: str, version: int) -> None:
    await wait_for(
        rest,
        f"/resource-bundles/{rid}",
        lambda b: (
            b["status"]["ObservedVersion"] == version
            and is_true(b["status"]["conditions"], "Applied")
            and is_true(b["status"]["conditions"], "Available")
        ),
        timeout=60,
    )


async def test_agent_broker_and_hub_restarts(
    e2e_hub: E2EHub,
    e2e_agent: StartAgent,
    rest: httpx.AsyncClient,
    kubectl: KubectlRunner,
    namespace: str,
    mosquitto: MosquittoServer,
) -> None:
    await e2e_hub.create_consumer()
    agent = await e2e_agent()
    stable = await ok(
        await rest.post(
            "/resource-bundles",
            json={
                "consumer_name": e2e_hub.consumer,
                "manifests": [deployment("web", namespace), configmap("a", namespace)],
            },
        ),
        201,
    )
    moving = await ok(
        await rest.post(
            "/resource-bundles", json={"consumer_name": e2e_hub.consumer, "manifests": [configmap("b", namespace)]}
        ),
        201,
    )
    await _settled(rest, stable["id"], 1)
    await _settled(rest, moving["id"], 1)
    before = _versions(kubectl, namespace)
    assert set(before) == {"Deployment/web", "ConfigMap/a", "ConfigMap/b"}
    version = 1

    async def change_moving() -> None:
        nonlocal version
        data = {"round": str(version)}
        body = {"version": version, "manifests": [configmap("b", namespace, data)]}
        await ok(await rest.put(f"/resource-bundles/{moving['id']}", json=body))
        version += 1

    # 1. The agent is SIGKILLed; meanwhile the hub changes one work and creates another. Restarted, it gets both.
    agent.kill()
    await change_moving()
    third = await ok(
        await rest.post(
            "/resource-bundles", json={"consumer_name": e2e_hub.consumer, "manifests": [configmap("c", namespace)]}
        ),
        201,
    )
    agent.start()
    await agent.wait_healthy()
    await _settled(rest, moving["id"], version)
    await _settled(rest, third["id"], 1)
    assert (get_json(kubectl, "configmap", "b", "-n", namespace) or {})["data"] == {"round": "1"}
    after = _versions(kubectl, namespace)
    assert {k: after[k] for k in ("Deployment/web", "ConfigMap/a")} == {
        k: before[k] for k in ("Deployment/web", "ConfigMap/a")
    }

    # 2. The broker restarts (persistent sessions): a change made while it is down arrives afterwards.
    before = _versions(kubectl, namespace)
    mosquitto.stop()
    try:
        await change_moving()
    finally:
        mosquitto.start()
    await _settled(rest, moving["id"], version)
    wait_kube(kubectl, lambda c: c is not None and c["data"] == {"round": "2"}, "configmap", "b", "-n", namespace)
    after = _versions(kubectl, namespace)
    assert after["Deployment/web"] == before["Deployment/web"]
    assert after["ConfigMap/a"] == before["ConfigMap/a"]

    # 3. The hub is SIGKILLed and restarted: a change and a delete made right after converge, the rest stays.
    before = _versions(kubectl, namespace)
    e2e_hub.process.kill()
    e2e_hub.process.start()
    await e2e_hub.process.wait_ready()
    await change_moving()
    await ok(await rest.delete(f"/resource-bundles/{third['id']}"), 204)
    await _settled(rest, moving["id"], version)
    wait_kube(kubectl, lambda c: c is None, "configmap", "c", "-n", namespace)
    after = _versions(kubectl, namespace)
    assert after["Deployment/web"] == before["Deployment/web"]
    assert after["ConfigMap/a"] == before["ConfigMap/a"]
    body = await wait_for(rest, f"/resource-bundles/{stable['id']}", lambda b: b["status"]["ObservedVersion"] == 1)
    assert is_true(body["status"]["conditions"], "Available")
    assert agent.running


async def test_works_no_hub_claims_are_evicted_after_the_grace_period(
    e2e_hub: E2EHub,
    e2e_agent: StartAgent,
    rest: httpx.AsyncClient,
    kubectl: KubectlRunner,
    namespace: str,
    tmp_path: Path,
) -> None:
    await e2e_hub.create_consumer()
    agent = await e2e_agent()
    created = await ok(
        await rest.post(
            "/resources", json={"consumer_name": e2e_hub.consumer, "manifest": configmap("old", namespace)}
        ),
        201,
    )
    await wait_for(
        rest, f"/resources/{created['id']}", lambda b: b["status"]["ReconcileStatus"]["ObservedVersion"] == 1
    )
    assert agent.stop() == 0

    # The same cluster's agent now talks to another hub (another source's topics): the old work is nobody's.
    other = tmp_path / "other-hub.yaml"
    other.write_text(
        f"brokerHost: {e2e_hub.broker_host}:{e2e_hub.broker_port}\ntopics:\n"
        f"  sourceEvents: sources/another-hub/consumers/{e2e_hub.consumer}/sourceevents\n"
        f"  agentEvents: sources/another-hub/consumers/{e2e_hub.consumer}/agentevents\n"
    )
    moved = AgentProcess(
        consumer=e2e_hub.consumer,
        workload_source_config=other,
        kubeconfig=agent.argv[agent.argv.index("--kubeconfig") + 1],
        agent_namespace=agent.agent_namespace,
        client_id=f"{e2e_hub.consumer}-moved",
        log=tmp_path / "moved.log",
        extra_args=("--appliedwork-eviction-grace-period", "3s"),
    )
    moved.start()
    try:
        await moved.wait_healthy()
        assert get_json(kubectl, "appliedwork", created["id"]) is not None  # not before the grace period
        wait_kube(kubectl, lambda c: c is None, "configmap", "old", "-n", namespace, timeout=30)
        wait_kube(kubectl, lambda a: a is None, "appliedwork", created["id"], timeout=30)
        assert "evicting work" in moved.output()
    finally:
        assert moved.stop() == 0, moved.tail()
