"""``maestro server`` as a subprocess: the transport is wired in, with mosquitto and with the embedded broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agent.simulator import SimulatedAgent
from protocol import mqtt_config
from server.dispatch import embedded_mqtt
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.fixtures.postgres import free_port
from tests.integration.dispatch_support import applied, eventually, simulated_agent

API = "/api/maestro/v1"


class ServerProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.http = free_port()
        self.health = free_port()
        env = {
            **os.environ,
            **env,
            "MAESTRO_HTTP_SERVER_BINDPORT": str(self.http),
            "MAESTRO_HEALTH_CHECK_SERVER_BINDPORT": str(self.health),
            "MAESTRO_METRICS_SERVER_BINDPORT": str(free_port()),
            "MAESTRO_GRPC_SERVER_BINDPORT": str(free_port()),
            "MAESTRO_DISABLE_AUTH": "true",
        }
        self.log = log
        self._out = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "server"], env=env, stdout=self._out, stderr=subprocess.STDOUT
        )

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._out.close()
        return self.process.returncode


@pytest.fixture
def server_env(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


async def wait_ready(server: ServerProcess, *, timeout: float = 60.0) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.health}") as client:

        async def ready() -> bool:
            if server.process.poll() is not None:
                raise AssertionError(f"maestro server exited early:\n{server.log.read_text(errors='replace')}")
            try:
                return (await client.get("/healthcheck")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready, timeout=timeout, interval=0.2)


async def round_trip(server: ServerProcess, agent: SimulatedAgent, consumer: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http}{API}") as client:
        assert (await client.post("/consumers", json={"name": consumer})).status_code == 201
        manifest: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cm", "namespace": "x"},
        }
        created = await client.post("/resources", json={"consumer_name": consumer, "manifest": manifest})
        assert created.status_code == 201, created.text
        rid = created.json()["id"]
        await agent.wait_until(lambda: 1 in applied(agent, rid), timeout=30)

        async def has_status() -> bool:
            body = (await client.get(f"/resources/{rid}")).json()
            return body.get("status", {}).get("ReconcileStatus", {}).get("ObservedVersion") == 1

        await eventually(has_status, timeout=30)


async def test_server_with_mosquitto(
    server_env: list[ServerProcess], tmp_path: Path, db_url: str, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> None:
    source = mqtt_names.source
    config_file = tmp_path / "mqtt.yaml"
    config_file.write_text(
        f"brokerHost: 127.0.0.1:{mosquitto.port}\n"
        "topics:\n"
        f"  sourceEvents: sources/{source}/consumers/+/sourceevents\n"
        f"  agentEvents: sources/{source}/consumers/+/agentevents\n"
    )
    server = ServerProcess(
        {
            "MAESTRO_DB_URL": db_url,
            "MAESTRO_MQTT_CONFIG_FILE": str(config_file),
            "MAESTRO_SOURCE_ID": source,
            "MAESTRO_CLIENT_ID": mqtt_names.client_id("server"),
            "MAESTRO_DISPATCH_POLL_INTERVAL": "1",
        },
        tmp_path / "server.log",
    )
    server_env.append(server)
    await wait_ready(server)
    consumer = "cluster-sub"
    agent = simulated_agent(
        mosquitto.config(source=source, consumer=consumer),
        source=source,
        consumer=consumer,
        client_id=mqtt_names.client_id("agent"),
    )
    await agent.start()
    try:
        await round_trip(server, agent, consumer)
    finally:
        await agent.stop()
    assert await asyncio.to_thread(server.stop) == 0, server.log.read_text(errors="replace")


async def test_server_with_the_embedded_broker(
    server_env: list[ServerProcess], tmp_path: Path, db_url: str, mqtt_names: MQTTNames
) -> None:
    port = free_port()
    env = {"MAESTRO_DB_URL": db_url, "MAESTRO_EMBEDDED_MQTT_PORT": str(port), "MAESTRO_CLIENT_ID": "hub"}
    server = ServerProcess({**env, "MAESTRO_DATA_DIR": str(tmp_path)}, tmp_path / "server.log")
    server_env.append(server)
    await wait_ready(server)
    consumer = "cluster-emb"
    # NB: the agent logs in as a user would set it up: with the config `maestro agent-config` prints.
    command = [sys.executable, "-m", "server.cli", "agent-config", "--consumer", consumer,
               "--data-dir", str(tmp_path), "--embedded-mqtt-port", str(port)]  # fmt: skip
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, check=True, timeout=30)
    printed = done.stdout
    config = mqtt_config.from_mapping(yaml.safe_load(printed))
    agent = simulated_agent(config, source="maestro", consumer=consumer, client_id=f"{consumer}-work-agent-client")
    await agent.start()
    try:
        await round_trip(server, agent, consumer)
    finally:
        await agent.stop()
    assert await asyncio.to_thread(server.stop) == 0, server.log.read_text(errors="replace")


async def test_server_serves_while_the_broker_is_down_and_delivers_once_it_is_up(
    server_env: list[ServerProcess], tmp_path: Path, db_url: str
) -> None:
    port = free_port()
    broker = embedded_mqtt.EmbeddedBroker(port=port, data_dir=tmp_path)
    config_file = tmp_path / "mqtt.yaml"
    config_file.write_text(
        f"brokerHost: 127.0.0.1:{port}\nusername: maestro\npassword: {broker.password}\nprotocolVersion: 3\n"
        "dialTimeout: 2\n"
        "topics:\n  sourceEvents: sources/maestro/consumers/+/sourceevents\n"
        "  agentEvents: sources/maestro/consumers/+/agentevents\n"
    )
    server = ServerProcess(
        {"MAESTRO_DB_URL": db_url, "MAESTRO_MQTT_CONFIG_FILE": str(config_file), "MAESTRO_CLIENT_ID": "hub-down"},
        tmp_path / "server.log",
    )
    server_env.append(server)
    consumer = "cluster-late"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http}{API}") as client:

        async def rest_up() -> bool:
            try:
                return (await client.get("/consumers")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(rest_up, timeout=60, interval=0.2)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.health}") as health:
            assert (await health.get("/healthcheck")).status_code == 503
        assert (await client.post("/consumers", json={"name": consumer})).status_code == 201
        manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "x"}}
        created = await client.post("/resources", json={"consumer_name": consumer, "manifest": manifest})
        assert created.status_code == 201
        rid = created.json()["id"]

    await broker.start()
    try:
        await wait_ready(server)
        agent = simulated_agent(broker.config("maestro"), source="maestro", consumer=consumer, client_id="agent-late")
        await agent.start()
        try:
            await agent.wait_until(lambda: 1 in applied(agent, rid), timeout=30)
        finally:
            await agent.stop()
        assert await asyncio.to_thread(server.stop) == 0
    finally:
        await broker.stop()
    log = server.log.read_text(errors="replace")
    assert "retrying" in log
    assert "Traceback" not in log
