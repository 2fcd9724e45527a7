"""Finding 1, with client certificates and ``--grpc-authorizer-config``: a certificate verified by
``--grpc-client-ca-file`` authenticates as its CN, a bearer token (when also sent) as its ``sub``, and the
authorizer config says which source ids each subject may act for (only those: a subject it does not list gets none).

Probed against a real ``maestro server`` (gRPC over mutual TLS, REST with a JWKS) with PostgreSQL and Mosquitto.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from protocol import types
from protocol.grpc import cloudevent_pb2 as pb
from protocol.grpc import cloudevent_pb2_grpc as pb_grpc
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.fixtures.postgres import free_port
from tests.integration.dispatch_support import HubProcess, write_mqtt_config
from tests.integration.security.support import PKI, Certificate, Signer, bearer, spec_request

POLICY = """\
# subject (certificate CN or JWT sub) -> the source ids it may publish and subscribe for
ops: [team-a, team-b]
cluster-service: ["*"]
"""


@dataclass
class MTLSHub:
    process: HubProcess
    grpc_port: int
    consumer: str
    pki: PKI

    def channel(self, client: Certificate | None) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(f"127.0.0.1:{self.grpc_port}", self.pki.channel_credentials(client))


@pytest.fixture(scope="module")
async def hub(
    tmp_path_factory: pytest.TempPathFactory,
    module_db_url: str,
    mosquitto: MosquittoServer,
    names: MQTTNames,
    signer: Signer,
    pki: PKI,
) -> AsyncIterator[MTLSHub]:
    import httpx

    directory = tmp_path_factory.mktemp("grpc-mtls")
    config = write_mqtt_config(directory / "mqtt.yaml", host=mosquitto.host, port=mosquitto.port, source=names.source)
    policy = directory / "authorizer.yaml"
    policy.write_text(POLICY)
    grpc_port = free_port()
    process = HubProcess(
        db_url=module_db_url,
        mqtt_config_file=config,
        source=names.source,
        client_id=names.client_id("hub"),
        log=directory / "hub.log",
        args=(
            "--no-disable-auth",
            "--jwk-cert-file", str(signer.jwks_file),
            "--enable-grpc-server",
            "--grpc-server-bindport", str(grpc_port),
            "--grpc-tls-cert-file", str(pki.server_cert_file),
            "--grpc-tls-key-file", str(pki.server_key_file),
            "--grpc-client-ca-file", str(pki.ca_file),
            "--grpc-authorizer-config", str(policy),
        ),
    )  # fmt: skip
    process.start()
    try:
        await process.wait_ready()
        async with httpx.AsyncClient(base_url=process.api, headers=signer.headers()) as rest:
            created = await rest.post("/consumers", json={"name": names.consumer})
            assert created.status_code == 201, created.text
        yield MTLSHub(process, grpc_port, names.consumer, pki)
    finally:
        process.stop()


async def publish(hub: MTLSHub, client: Certificate | None, source: str, metadata: Any = ()) -> grpc.StatusCode:
    request = spec_request(types.CREATE_REQUEST, str(uuid.uuid4()), source=source, consumer=hub.consumer)
    async with hub.channel(client) as channel:
        stub = pb_grpc.CloudEventServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            await stub.Publish(request, metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


async def subscribe(hub: MTLSHub, client: Certificate | None, source: str) -> grpc.StatusCode:
    """OK once the stream is open (the server sends its initial metadata after authorizing), else the code."""
    async with hub.channel(client) as channel:
        stub = pb_grpc.CloudEventServiceStub(channel)  # type: ignore[no-untyped-call]
        call = stub.Subscribe(pb.SubscriptionRequest(source=source), metadata=(("maestro-cursor", "0-0"),), timeout=10)
        try:
            await call.initial_metadata()
            code = await call.code() if call.done() else grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
        finally:
            call.cancel()
    return code


async def test_certificate_acts_for_the_sources_the_config_grants(hub: MTLSHub) -> None:
    ops = hub.pki.issue("ops")
    assert await publish(hub, ops, "team-a") == grpc.StatusCode.OK
    assert await publish(hub, ops, "team-b") == grpc.StatusCode.OK
    assert await publish(hub, ops, "team-c") == grpc.StatusCode.PERMISSION_DENIED
    assert await publish(hub, ops, "ops") == grpc.StatusCode.PERMISSION_DENIED  # the config replaces the default
    assert await subscribe(hub, ops, "team-b") == grpc.StatusCode.OK
    assert await subscribe(hub, ops, "team-c") == grpc.StatusCode.PERMISSION_DENIED


async def test_subject_the_config_does_not_list_acts_for_nothing(hub: MTLSHub) -> None:
    alice = hub.pki.issue("alice")
    assert await publish(hub, alice, "alice") == grpc.StatusCode.PERMISSION_DENIED
    assert await subscribe(hub, alice, "alice") == grpc.StatusCode.PERMISSION_DENIED


async def test_wildcard_grant(hub: MTLSHub) -> None:
    service = hub.pki.issue("cluster-service")
    for source in ("team-a", "anything", "cluster-service"):
        assert await publish(hub, service, source) == grpc.StatusCode.OK


async def test_bearer_token_names_the_caller_on_a_certified_connection(hub: MTLSHub, signer: Signer) -> None:
    """A token is a per-call credential: it wins over the connection's certificate."""
    alice = hub.pki.issue("alice")
    assert await publish(hub, alice, "team-a", bearer(signer.token("ops"))) == grpc.StatusCode.OK
    invalid = bearer("not-a-jwt")
    assert await publish(hub, hub.pki.issue("ops"), "team-a", invalid) == grpc.StatusCode.UNAUTHENTICATED


async def test_certificate_of_another_ca_is_refused(hub: MTLSHub, tmp_path_factory: pytest.TempPathFactory) -> None:
    rogue = PKI(tmp_path_factory.mktemp("rogue"), name="rogue-ca").issue("ops")
    assert await publish(hub, rogue, "team-a") == grpc.StatusCode.UNAVAILABLE
    assert await publish(hub, None, "team-a") == grpc.StatusCode.UNAVAILABLE
