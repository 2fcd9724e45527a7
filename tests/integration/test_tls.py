"""TLS and mutual TLS on both transports: MQTT (to a real mosquitto with a TLS listener) and gRPC."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import databases
import grpc
import pytest

from protocol import cloudevents_mqtt, events, grpc_codec, mqtt, mqtt_config, types
from protocol.errors import BrokerError
from protocol.grpc import cloudevent_pb2 as pb
from protocol.grpc import cloudevent_pb2_grpc as pb_grpc
from server.grpc import server as grpc_server
from server.services import consumers, watch
from server.settings import Settings
from server.store import resources
from server.store.db import connection
from tests.fixtures.mosquitto import MosquittoServer


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki() -> Iterator[Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, readable by mosquitto."""
    d = Path(tempfile.mkdtemp(prefix="maestro-pki-", dir="/tmp"))
    d.chmod(0o755)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        cwd=d,
    )
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=d,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
            "-out",
            f"{name}.crt",
            cwd=d,
        )
    for path in d.iterdir():
        path.chmod(0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_mosquitto(pki: Path) -> Iterator[MosquittoServer]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    directory = Path(tempfile.mkdtemp(prefix="maestro-mosquitto-tls-", dir="/tmp"))
    server = MosquittoServer(binary=binary, directory=directory)
    server.config_file.write_text(
        f"listener {server.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"cafile {pki / 'ca.crt'}\ncertfile {pki / 'server.crt'}\nkeyfile {pki / 'server.key'}\n"
        "require_certificate true\nlog_dest file " + str(directory / "mosquitto.log") + "\n"
    )
    if os.geteuid() == 0:
        shutil.chown(directory, "mosquitto")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


def _config_file(tmp_path: Path, pki: Path, port: int, *, client_cert: bool) -> Path:
    lines = [f"brokerHost: 127.0.0.1:{port}", f"caFile: {pki / 'ca.crt'}", "dialTimeout: 5s"]
    if client_cert:
        lines += [f"clientCertFile: {pki / 'client.crt'}", f"clientKeyFile: {pki / 'client.key'}"]
    lines += [
        "topics:",
        "  sourceEvents: sources/maestro/consumers/+/sourceevents",
        "  agentEvents: sources/maestro/consumers/+/agentevents",
    ]
    path = tmp_path / "mqtt.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_mqtt_mutual_tls(tls_mosquitto: MosquittoServer, pki: Path, tmp_path: Path) -> None:
    config = mqtt_config.load(_config_file(tmp_path, pki, tls_mosquitto.port, client_cert=True))
    assert config.tls
    topic = "sources/maestro/consumers/cluster1/agentevents"
    event = events.make_event(
        type=types.manifestbundle_type("status", types.UPDATE_REQUEST),
        source="agent",
        data={"conditions": []},
        extensions={"resourceid": str(uuid.uuid4())},
    )
    async with mqtt.Broker(config, client_id=f"tls-{uuid.uuid4().hex[:8]}", subscriptions=[topic]) as broker:
        await broker.wait_connected(timeout=10)
        ack = await broker.publish(topic, cloudevents_mqtt.encode(event), timeout=10)
        await asyncio.wait_for(ack, 10)
        async with asyncio.timeout(10):
            async for received in broker.messages():
                assert cloudevents_mqtt.decode(received.message).get_id() == event.get_id()
                break


async def test_mqtt_without_client_certificate_is_refused(
    tls_mosquitto: MosquittoServer, pki: Path, tmp_path: Path
) -> None:
    config = mqtt_config.load(_config_file(tmp_path, pki, tls_mosquitto.port, client_cert=False))
    broker = mqtt.Broker(config, client_id=f"tls-{uuid.uuid4().hex[:8]}", first_connect_timeout=5)
    with pytest.raises(BrokerError):
        await broker.start()
    await broker.close()


@pytest.fixture
async def grpc_port(pki: Path, database: databases.Database, db_url: str) -> AsyncIterator[int]:
    await consumers.create(database, {"name": "cluster1"})
    settings = Settings.of(
        db_url=db_url,
        grpc_tls_cert_file=str(pki / "server.crt"),
        grpc_tls_key_file=str(pki / "server.key"),
        grpc_client_ca_file=str(pki / "ca.crt"),
    )
    server, port = await grpc_server.start(settings, database, watch.StatusFeed(), port=0)
    yield port
    await server.stop(grace=None)


def _create(rid: str) -> pb.PublishRequest:
    event = events.make_event(
        type=types.manifestbundle_type("spec", types.CREATE_REQUEST),
        source="client",  # NB: the client certificate's CN; a certificate acts for that source only
        data={"manifests": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d"}}]},
        extensions={"resourceid": rid, "clustername": "cluster1"},
    )
    return pb.PublishRequest(event=grpc_codec.to_proto(event))


async def test_grpc_mutual_tls(grpc_port: int, pki: Path, database: databases.Database) -> None:
    root = (pki / "ca.crt").read_bytes()
    good = grpc.ssl_channel_credentials(root, (pki / "client.key").read_bytes(), (pki / "client.crt").read_bytes())
    rid = str(uuid.uuid4())
    async with grpc.aio.secure_channel(f"127.0.0.1:{grpc_port}", good) as channel:
        await pb_grpc.CloudEventServiceStub(channel).Publish(_create(rid))  # type: ignore[no-untyped-call]
    async with connection(database) as conn:
        assert await resources.get(conn, rid) is not None

    no_cert = grpc.ssl_channel_credentials(root)
    async with grpc.aio.secure_channel(f"127.0.0.1:{grpc_port}", no_cert) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await pb_grpc.CloudEventServiceStub(channel).Publish(_create(str(uuid.uuid4())), timeout=5)  # type: ignore[no-untyped-call]
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await pb_grpc.CloudEventServiceStub(channel).Publish(_create(str(uuid.uuid4())), timeout=5)  # type: ignore[no-untyped-call]
