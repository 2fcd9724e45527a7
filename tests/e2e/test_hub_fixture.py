"""Smoke test of the ``e2e_hub`` fixture: a real ``maestro server`` process, PostgreSQL and Mosquitto, no agent."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from protocol import mqtt_config
from tests.e2e.hub_support import E2EHub

NGINX = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx", "namespace": "default"},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "nginx"}},
             "template": {"metadata": {"labels": {"app": "nginx"}},
                          "spec": {"containers": [{"image": "nginxinc/nginx-unprivileged", "name": "nginx"}]}}},
}  # fmt: skip


async def test_consumer_and_resource_over_rest(e2e_hub: E2EHub, rest: httpx.AsyncClient) -> None:
    consumer = await e2e_hub.create_consumer()
    assert consumer["name"] == e2e_hub.consumer

    posted = await rest.post("/resources", json={"consumer_name": e2e_hub.consumer, "manifest": NGINX})
    assert posted.status_code == 201, posted.text
    rid = posted.json()["id"]

    listed = await rest.get("/resources", params={"search": f"consumer_name = '{e2e_hub.consumer}'"})
    assert listed.status_code == 200, listed.text
    assert [r["id"] for r in listed.json()["items"]] == [rid]

    with socket.create_connection(("127.0.0.1", e2e_hub.grpc_port), timeout=5):
        pass  # the gRPC server listens


def test_agent_mqtt_config_is_valid(e2e_hub: E2EHub, tmp_path: Path) -> None:
    path = e2e_hub.agent_mqtt_config(tmp_path / "agent-mqtt.yaml")
    config = mqtt_config.load(path)
    assert (config.host, config.port) == (e2e_hub.broker_host, e2e_hub.broker_port)
    prefix = f"sources/{e2e_hub.source}/consumers/{e2e_hub.consumer}"
    assert config.topics.source_events == f"{prefix}/sourceevents"
    assert config.topics.agent_events == f"{prefix}/agentevents"
