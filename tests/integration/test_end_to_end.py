"""The whole hub as a user meets it: ``maestro server`` (a real process) with a real broker and the built-in
simulated agent. A resource posted over REST is delivered, its status comes back and is visible in REST, in the
REST watch and on the gRPC Subscribe stream; an update and a two-phase delete follow the same path."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from agent.simulator import SimulatedAgent
from protocol import grpc_codec
from protocol.grpc import cloudevent_pb2 as pb
from protocol.grpc import cloudevent_pb2_grpc as pb_grpc
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.fixtures.postgres import free_port
from tests.integration.dispatch_support import HubProcess, eventually, write_mqtt_config

NGINX = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx", "namespace": "default"},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "nginx"}},
             "template": {"metadata": {"labels": {"app": "nginx"}},
                          "spec": {"containers": [{"image": "nginxinc/nginx-unprivileged", "name": "nginx"}]}}},
}  # fmt: skip


@pytest.fixture
async def hub(
    tmp_path: Path, db_url: str, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> AsyncIterator[tuple[HubProcess, int]]:
    config = write_mqtt_config(
        tmp_path / "mqtt.yaml", host=mosquitto.host, port=mosquitto.port, source=mqtt_names.source
    )
    grpc_port = free_port()
    process = HubProcess(
        db_url=db_url,
        mqtt_config_file=config,
        source=mqtt_names.source,
        client_id=mqtt_names.client_id("hub"),
        log=tmp_path / "hub.log",
        args=("--enable-grpc-server", "--grpc-server-bindport", str(grpc_port)),
    )
    process.start()
    try:
        await process.wait_ready()
        yield process, grpc_port
    finally:
        assert process.stop() == 0, process.output()[-3000:]


async def test_post_deliver_status_update_delete(
    hub: tuple[HubProcess, int], mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> None:
    process, grpc_port = hub
    consumer = mqtt_names.consumer
    agent_config = mosquitto.config(source=mqtt_names.source, consumer=consumer)
    async with (
        httpx.AsyncClient(base_url=process.api, timeout=20) as client,
        SimulatedAgent(
            consumer=consumer, config=agent_config, source=mqtt_names.source, client_id=mqtt_names.client_id("agent")
        ) as agent,
        grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
    ):
        assert (await client.post("/consumers", json={"name": consumer})).status_code == 201
        subscription = pb_grpc.CloudEventServiceStub(channel).Subscribe(  # type: ignore[no-untyped-call]
            pb.SubscriptionRequest(source=mqtt_names.source)
        )
        await subscription.initial_metadata()
        async with client.stream("GET", "/resource-bundles", params={"watch": "true"}) as watch:
            lines = watch.aiter_lines()
            await asyncio.sleep(0.5)

            posted = await client.post("/resources", json={"consumer_name": consumer, "manifest": NGINX})
            assert posted.status_code == 201, posted.text
            rid = posted.json()["id"]

            await agent.wait_until(lambda: rid in agent.works, timeout=20)

            async def reported() -> bool:
                body = (await client.get(f"/resources/{rid}")).json()
                return "status" in body

            await eventually(reported, timeout=20)
            resource = (await client.get(f"/resources/{rid}")).json()
            status = resource["status"]
            assert status["ReconcileStatus"]["ObservedVersion"] == 1
            assert {c["type"]: c["status"] for c in status["ReconcileStatus"]["Conditions"]}["Applied"] == "True"
            assert status["ContentStatus"]["availableReplicas"] == 2  # the object's own .status, fed back

            async with asyncio.timeout(20):
                line = await anext(lines)
                while not line.strip():
                    line = await anext(lines)
            watched = json.loads(line)
            assert watched["type"] == "StatusUpdate"
            assert watched["object"]["id"] == rid

        async with asyncio.timeout(20):
            message = await subscription.read()
            while grpc_codec.is_heartbeat(message):
                message = await subscription.read()
        streamed = grpc_codec.from_proto(message)
        assert streamed.get_extension("resourceid") == rid
        subscription.cancel()

        patched = await client.patch(
            f"/resources/{rid}", json={"version": 1, "manifest": {**NGINX, "spec": {**NGINX["spec"], "replicas": 3}}}
        )  # type: ignore[dict-item]
        assert patched.json()["version"] == 2

        async def observed(version: int) -> bool:
            body: dict[str, Any] = (await client.get(f"/resources/{rid}")).json()
            return bool(body.get("status", {}).get("ReconcileStatus", {}).get("ObservedVersion") == version)

        await eventually(lambda: observed(2), timeout=20)
        assert agent.works[rid].version == 2

        assert (await client.delete(f"/resources/{rid}")).status_code == 204
        # Visible (with deleted_at) until the agent confirms; the simulated agent may confirm before this GET, so a
        # 404 is fine here (test_rest_resources checks the deleting state itself, without an agent).
        deleting = await client.get(f"/resources/{rid}")
        assert deleting.status_code == 404 or "deleted_at" in deleting.json(), deleting.text

        async def gone() -> bool:
            return (await client.get(f"/resources/{rid}")).status_code == 404

        await eventually(gone, timeout=20)
        assert rid not in agent.works
        # With no resources left, the consumer can go.
        consumer_id = (await client.get("/consumers", params={"search": f"name = '{consumer}'"})).json()["items"][0]
        assert (await client.delete(f"/consumers/{consumer_id['id']}")).status_code == 204
