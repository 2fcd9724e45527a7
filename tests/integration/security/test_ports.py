"""Finding 5: a port another process holds is one line on stderr and exit code 1, for every listener; and two hubs
never share the gRPC port (gRPC's default SO_REUSEPORT let the kernel split clients between them).

Probed with real ``maestro server`` processes (PostgreSQL and Mosquitto real too).
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.fixtures.postgres import free_port
from tests.integration.dispatch_support import HubProcess, write_mqtt_config
from tests.integration.security.support import argv_with


def hub_process(tmp_path: Path, db_url: str, mosquitto: MosquittoServer, names: MQTTNames, role: str) -> HubProcess:
    config = write_mqtt_config(tmp_path / "mqtt.yaml", host=mosquitto.host, port=mosquitto.port, source=names.source)
    return HubProcess(
        db_url=db_url,
        mqtt_config_file=config,
        source=names.source,
        client_id=names.client_id(role),
        log=tmp_path / f"{role}.log",
        args=("--enable-grpc-server", "--grpc-server-bindport", str(free_port())),
    )


def run_until_exit(argv: list[str]) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"maestro server kept running on a taken port:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


@pytest.fixture
def taken() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


@pytest.mark.parametrize(
    ("flag", "name"),
    [
        ("--http-server-bindport", "REST"),
        ("--health-check-server-bindport", "health"),
        ("--metrics-server-bindport", "metrics"),
        ("--grpc-server-bindport", "gRPC"),
    ],
)
def test_taken_port_is_one_line_and_exit_1(
    tmp_path: Path,
    db_url: str,
    mosquitto: MosquittoServer,
    mqtt_names: MQTTNames,
    taken: int,
    flag: str,
    name: str,
) -> None:
    hub = hub_process(tmp_path, db_url, mosquitto, mqtt_names, "hub")
    done = run_until_exit(argv_with(hub.argv, flag, str(taken)))
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"maestro server: cannot listen on 127.0.0.1:{taken} ({name}): address already in use\n"
    assert done.stdout == ""


async def test_second_hub_cannot_bind_the_same_grpc_port(
    tmp_path: Path, db_url: str, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> None:
    first = hub_process(tmp_path, db_url, mosquitto, mqtt_names, "first")
    first.start()
    try:
        await first.wait_ready()
        grpc_port = first.argv[first.argv.index("--grpc-server-bindport") + 1]
        second = hub_process(tmp_path, db_url, mosquitto, mqtt_names, "second")
        done = run_until_exit(argv_with(second.argv, "--grpc-server-bindport", grpc_port))
        assert done.returncode == 1, done.stderr
        expected = f"maestro server: cannot listen on 127.0.0.1:{grpc_port} (gRPC): address already in use\n"
        assert done.stderr == expected
        assert first.process is not None
        assert first.process.poll() is None  # the first hub keeps serving
    finally:
        assert first.stop() == 0
