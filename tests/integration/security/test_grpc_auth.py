"""Finding 1: gRPC must hold as REST holds. With a JWKS configured, ``Publish`` and ``Subscribe`` need a bearer JWT
(``authorization`` metadata) signed by it, and a token acts only for the source id equal to its subject; a spec
event may only touch a bundle of its own source and consumer.

Probed against a real ``maestro server`` (REST auth on, gRPC in plain text) with PostgreSQL and Mosquitto.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from protocol import events, grpc_codec, types
from protocol.grpc import cloudevent_pb2 as pb
from protocol.grpc import cloudevent_pb2_grpc as pb_grpc
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.fixtures.postgres import free_port
from tests.integration.dispatch_support import HubProcess, simulated_agent, write_mqtt_config
from tests.integration.security.support import CONFIGMAP, Signer, bearer, spec_request


@dataclass
class SecuredHub:
    process: HubProcess
    grpc_port: int
    source: str
    consumer: str
    other_consumer: str

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(f"127.0.0.1:{self.grpc_port}")


@pytest.fixture(scope="module")
async def hub(
    tmp_path_factory: pytest.TempPathFactory,
    module_db_url: str,
    mosquitto: MosquittoServer,
    names: MQTTNames,
    signer: Signer,
) -> AsyncIterator[SecuredHub]:
    directory = tmp_path_factory.mktemp("grpc-auth")
    config = write_mqtt_config(directory / "mqtt.yaml", host=mosquitto.host, port=mosquitto.port, source=names.source)
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
        ),
    )  # fmt: skip
    process.start()
    try:
        await process.wait_ready()
        hub = SecuredHub(process, grpc_port, names.source, names.consumer, f"{names.consumer}-b")
        async with httpx.AsyncClient(base_url=process.api, headers=signer.headers()) as rest:
            for consumer in (hub.consumer, hub.other_consumer):
                created = await rest.post("/consumers", json={"name": consumer})
                assert created.status_code == 201, created.text
        yield hub
    finally:
        process.stop()


@pytest.fixture
async def rest(hub: SecuredHub, signer: Signer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=hub.process.api, headers=signer.headers()) as client:
        yield client


async def publish(hub: SecuredHub, request: pb.PublishRequest, metadata: Any = ()) -> grpc.StatusCode:
    async with hub.channel() as channel:
        stub = pb_grpc.CloudEventServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            await stub.Publish(request, metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


async def subscribe_first(
    hub: SecuredHub, source: str, metadata: Any = (), *, timeout: float = 5.0, resource_id: str | None = None
) -> pb.CloudEvent | grpc.StatusCode:
    """The first status event (for ``resource_id`` if given) of a Subscribe stream, or the code it failed with."""
    async with hub.channel() as channel:
        stub = pb_grpc.CloudEventServiceStub(channel)  # type: ignore[no-untyped-call]
        call = stub.Subscribe(pb.SubscriptionRequest(source=source), metadata=metadata)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    message: pb.CloudEvent = await call.read()
                    if grpc_codec.is_heartbeat(message):
                        continue
                    found = grpc_codec.from_proto(message).get_extension(types.EXT_RESOURCE_ID)
                    if resource_id is None or found == resource_id:
                        return message
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        finally:
            call.cancel()


async def bundle(rest: httpx.AsyncClient, rid: str) -> dict[str, Any] | None:
    response = await rest.get(f"/resource-bundles/{rid}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_publish_without_credentials_is_unauthenticated(hub: SecuredHub, rest: httpx.AsyncClient) -> None:
    rid = str(uuid.uuid4())
    request = spec_request(types.CREATE_REQUEST, rid, source="anyone", consumer=hub.consumer)
    assert await publish(hub, request) == grpc.StatusCode.UNAUTHENTICATED
    for junk in ("Bearer not-a-jwt", "Basic YWxpY2U6c2VjcmV0", "Bearer "):
        assert await publish(hub, request, (("authorization", junk),)) == grpc.StatusCode.UNAUTHENTICATED
    assert await bundle(rest, rid) is None


async def test_token_of_another_issuer_is_unauthenticated(
    hub: SecuredHub, rest: httpx.AsyncClient, tmp_path: Path
) -> None:
    stranger = Signer.create(tmp_path)  # NB: the same kid, other key material
    rid = str(uuid.uuid4())
    request = spec_request(types.CREATE_REQUEST, rid, source="alice", consumer=hub.consumer)
    assert await publish(hub, request, bearer(stranger.token("alice"))) == grpc.StatusCode.UNAUTHENTICATED
    assert await bundle(rest, rid) is None


async def test_unauthenticated_replay_reads_nothing(hub: SecuredHub, signer: Signer) -> None:
    """The probe that found it: ``Subscribe`` with ``maestro-cursor: 0-0`` replayed every status event."""
    for source in (hub.source, "alice"):
        answer = await subscribe_first(hub, source, (("maestro-cursor", "0-0"),))
        assert answer == grpc.StatusCode.UNAUTHENTICATED
    garbage = await subscribe_first(hub, "alice", (("maestro-cursor", "nonsense"),))
    assert garbage == grpc.StatusCode.UNAUTHENTICATED  # authentication comes before anything else is read


async def test_publish_for_another_source_is_permission_denied(
    hub: SecuredHub, signer: Signer, rest: httpx.AsyncClient
) -> None:
    rid = str(uuid.uuid4())
    for source in ("bob", hub.source):
        request = spec_request(types.CREATE_REQUEST, rid, source=source, consumer=hub.consumer)
        assert await publish(hub, request, bearer(signer.token("alice"))) == grpc.StatusCode.PERMISSION_DENIED
    assert await bundle(rest, rid) is None
    resync = grpc_codec.to_proto(
        events.make_event(
            type=types.manifestbundle_type("status", types.RESYNC_REQUEST), source="bob", data={"statusHashes": []}
        )
    )
    denied = await publish(hub, pb.PublishRequest(event=resync), bearer(signer.token("alice")))
    assert denied == grpc.StatusCode.PERMISSION_DENIED


async def test_subscribe_for_another_source_is_permission_denied(hub: SecuredHub, signer: Signer) -> None:
    for source in ("bob", hub.source):
        answer = await subscribe_first(hub, source, (("maestro-cursor", "0-0"), *bearer(signer.token("alice"))))
        assert answer == grpc.StatusCode.PERMISSION_DENIED


async def test_own_source_publishes_and_reads_its_status(
    hub: SecuredHub, signer: Signer, rest: httpx.AsyncClient, mosquitto: MosquittoServer, names: MQTTNames
) -> None:
    """What stays open: a token acts for its own source, end to end (create, the agent's status, Subscribe)."""
    agent = simulated_agent(
        mosquitto.config(source=hub.source, consumer=hub.consumer),
        source=hub.source,
        consumer=hub.consumer,
        client_id=names.client_id("agent"),
    )
    async with agent:
        rid = str(uuid.uuid4())
        request = spec_request(types.CREATE_REQUEST, rid, source="alice", consumer=hub.consumer)
        assert await publish(hub, request, bearer(signer.token("alice"))) == grpc.StatusCode.OK
        found = await bundle(rest, rid)
        assert found is not None
        assert found["manifests"] == [CONFIGMAP]
        replay = (("maestro-cursor", "0-0"), *bearer(signer.token("alice")))
        status = await subscribe_first(hub, "alice", replay, timeout=30, resource_id=rid)
        assert isinstance(status, pb.CloudEvent), status
        assert grpc_codec.from_proto(status).get_extension(types.EXT_ORIGINAL_SOURCE) == "alice"


async def test_delete_request_must_match_the_bundle(hub: SecuredHub, signer: Signer, rest: httpx.AsyncClient) -> None:
    """A delete for another consumer's bundle is refused (as an update is), and so is one for another source's."""
    alice = bearer(signer.token("alice"))
    rid = str(uuid.uuid4())
    created = spec_request(types.CREATE_REQUEST, rid, source="alice", consumer=hub.consumer)
    assert await publish(hub, created, alice) == grpc.StatusCode.OK

    wrong_consumer = spec_request(types.DELETE_REQUEST, rid, source="alice", consumer=hub.other_consumer)
    assert await publish(hub, wrong_consumer, alice) == grpc.StatusCode.INVALID_ARGUMENT
    found = await bundle(rest, rid)
    assert found is not None
    assert "deleted_at" not in found

    through_rest = await rest.post("/resource-bundles", json={"consumer_name": hub.consumer, "manifests": [CONFIGMAP]})
    assert through_rest.status_code == 201, through_rest.text
    other = through_rest.json()["id"]
    for action in (types.DELETE_REQUEST, types.UPDATE_REQUEST):
        foreign = spec_request(action, other, source="alice", consumer=hub.consumer)
        assert await publish(hub, foreign, alice) == grpc.StatusCode.PERMISSION_DENIED
    found = await bundle(rest, other)
    assert found is not None
    assert "deleted_at" not in found
    assert found["version"] == 1

    own = spec_request(types.DELETE_REQUEST, rid, source="alice", consumer=hub.consumer)
    assert await publish(hub, own, alice) == grpc.StatusCode.OK
    found = await bundle(rest, rid)
    assert found is None or "deleted_at" in found


async def test_disable_auth_is_the_explicit_way_off_and_says_so(
    tmp_path: Path, db_url: str, mosquitto: MosquittoServer, mqtt_names: MQTTNames, signer: Signer
) -> None:
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
        args=(
            "--jwk-cert-file",
            str(signer.jwks_file),
            "--enable-grpc-server",
            "--grpc-server-bindport",
            str(grpc_port),
        ),
    )  # NB: HubProcess passes --disable-auth
    process.start()
    try:
        await process.wait_ready()
        async with httpx.AsyncClient(base_url=process.api) as rest:
            assert (await rest.post("/consumers", json={"name": mqtt_names.consumer})).status_code == 201
        hub = SecuredHub(process, grpc_port, mqtt_names.source, mqtt_names.consumer, mqtt_names.consumer)
        request = spec_request(types.CREATE_REQUEST, str(uuid.uuid4()), source="anyone", consumer=hub.consumer)
        assert await publish(hub, request) == grpc.StatusCode.OK
    finally:
        process.stop()
    warnings = [line for line in process.output().splitlines() if "WARNING" in line and "--disable-auth" in line]
    assert warnings, process.output()


def test_no_authentication_on_a_network_address_refuses_to_start(
    tmp_path: Path, db_url: str, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> None:
    """Without a JWKS, a client CA or --disable-auth, the hub serves loopback only (with a warning)."""
    config = write_mqtt_config(
        tmp_path / "mqtt.yaml", host=mosquitto.host, port=mosquitto.port, source=mqtt_names.source
    )
    process = HubProcess(
        db_url=db_url,
        mqtt_config_file=config,
        source=mqtt_names.source,
        client_id=mqtt_names.client_id("hub"),
        log=tmp_path / "hub.log",
        args=("--no-disable-auth", "--server-hostname", "0.0.0.0"),
    )
    try:
        done = subprocess.run(process.argv, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("maestro server started on 0.0.0.0 without authentication")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("maestro server: no authentication is configured"), lines
    assert "--disable-auth" in lines[0]


@pytest.mark.parametrize(
    ("policy", "extra", "expected"),
    [
        ("- alice\n- bob\n", (), "--grpc-authorizer-config {path}: expected a mapping of subject"),
        ("alice: {team: a}\n", (), "--grpc-authorizer-config {path}: subject 'alice': expected a list of source ids"),
        ("alice: [a\n", (), "--grpc-authorizer-config {path}: cannot read it"),
        (None, ("--grpc-client-ca-file", "/nonexistent/ca.crt"), "--grpc-client-ca-file needs --grpc-tls-cert-file"),
    ],
    ids=["list", "nested", "yaml", "ca-without-tls"],
)
def test_bad_grpc_security_flags_are_one_line(
    tmp_path: Path,
    db_url: str,
    mosquitto: MosquittoServer,
    mqtt_names: MQTTNames,
    signer: Signer,
    policy: str | None,
    extra: tuple[str, ...],
    expected: str,
) -> None:
    path = tmp_path / "authorizer.yaml"
    args = ["--no-disable-auth", "--jwk-cert-file", str(signer.jwks_file), "--enable-grpc-server", *extra]
    if policy is not None:
        path.write_text(policy)
        args += ["--grpc-authorizer-config", str(path)]
    config = write_mqtt_config(tmp_path / "mqtt.yaml", host=mosquitto.host, port=mosquitto.port, source="s")
    process = HubProcess(
        db_url=db_url,
        mqtt_config_file=config,
        source="s",
        client_id=mqtt_names.client_id("hub"),
        log=tmp_path / "hub.log",
        args=(*args, "--grpc-server-bindport", str(free_port())),
    )
    done = subprocess.run(process.argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("maestro server: " + expected.format(path=path)), lines
