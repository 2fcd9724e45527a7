"""The source-facing gRPC CloudEventService: Publish writes bundles, Subscribe streams their status and resumes
from a cursor."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import databases
import grpc
import pytest

from protocol import events, grpc_codec, types
from protocol.grpc import cloudevent_pb2 as pb
from protocol.grpc import cloudevent_pb2_grpc as pb_grpc
from server import dsn
from server.dispatch.listen import listen
from server.grpc import server as grpc_server
from server.services import consumers, watch
from server.settings import Settings
from server.store import resources
from server.store.db import connection
from tests.integration.status_support import report

SOURCE = "test-source"
NGINX = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "nginx", "namespace": "default"},
    "spec": {"replicas": 1},
}


@pytest.fixture
async def stub(db_url: str, database: databases.Database) -> AsyncIterator[pb_grpc.CloudEventServiceStub]:
    await consumers.create(database, {"name": "cluster1"})
    settings = Settings.of(db_url=db_url, server_hostname="127.0.0.1")
    feed = watch.StatusFeed(poll_interval=settings.dispatch.dispatch_poll_interval)
    tasks = [
        asyncio.create_task(feed.run()),
        asyncio.create_task(listen(dsn.plain(db_url), "status_events", feed.wake, settings.database)),
    ]
    server, port = await grpc_server.start(settings, database, feed, port=0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pb_grpc.CloudEventServiceStub(channel)  # type: ignore[no-untyped-call]
    await server.stop(grace=None)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def spec_event(
    action: str, rid: str, *, version: int | None = None, manifests: list[Any] | None = None, consumer: str = "cluster1"
) -> pb.PublishRequest:
    event = events.make_event(
        type=types.manifestbundle_type("spec", action),
        source=SOURCE,
        data={
            "manifests": manifests if manifests is not None else [NGINX],
            "deleteOption": {"propagationPolicy": "Foreground"},
            "manifestConfigs": [],
        },
        extensions={
            "resourceid": rid,
            "clustername": consumer,
            "resourceversion": version,
            "metadata": '{"name":"nginx-work","labels":{"app":"web"}}',
        },
    )
    return pb.PublishRequest(event=grpc_codec.to_proto(event))


async def next_status(stream: Any) -> pb.CloudEvent:
    async with asyncio.timeout(10):
        while True:
            message: pb.CloudEvent = await stream.read()
            if not grpc_codec.is_heartbeat(message):
                return message


async def test_publish_create_update_delete(stub: pb_grpc.CloudEventServiceStub, database: databases.Database) -> None:
    rid = str(uuid.uuid4())
    await stub.Publish(spec_event(types.CREATE_REQUEST, rid))
    async with connection(database) as conn:
        row = await resources.get(conn, rid)
    assert row is not None
    assert (row.source, row.consumer_name, row.type, row.version) == (SOURCE, "cluster1", "Bundle", 1)
    assert row.payload["metadata"]["labels"] == {"app": "web"}

    await stub.Publish(
        spec_event(
            types.UPDATE_REQUEST,
            rid,
            version=1,
            manifests=[
                NGINX,
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"}},
            ],
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await stub.Publish(spec_event(types.UPDATE_REQUEST, rid, version=1))
    assert stale.value.code() == grpc.StatusCode.ABORTED
    assert "latest version: 2" in str(stale.value.details())
    with pytest.raises(grpc.aio.AioRpcError) as dup:
        await stub.Publish(spec_event(types.CREATE_REQUEST, rid))
    assert dup.value.code() == grpc.StatusCode.ALREADY_EXISTS

    await stub.Publish(spec_event(types.DELETE_REQUEST, rid, version=2))
    async with connection(database) as conn:
        row = await resources.get(conn, rid)
        logged = await conn.fetch(
            "SELECT event_type, payload->>'actor' AS actor FROM events WHERE source_id = $1 ORDER BY id", rid
        )
    assert row is not None
    assert row.deleted_at is not None
    assert row.version == 2
    assert [r["event_type"] for r in logged] == ["Create", "Update", "Delete"]
    assert {r["actor"] for r in logged} == {SOURCE}  # nobody authenticated: the source is who wrote it


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(
            lambda rid: spec_event(types.CREATE_REQUEST, rid, consumer="no-such-cluster"), id="unknown-consumer"
        ),
        pytest.param(lambda rid: spec_event(types.CREATE_REQUEST, "not-a-uuid"), id="bad-resource-id"),
        pytest.param(lambda rid: spec_event(types.CREATE_REQUEST, rid, manifests=[]), id="no-manifests"),
        pytest.param(lambda rid: spec_event(types.CREATE_REQUEST, rid, manifests=[{"kind": "X"}]), id="bad-manifest"),
        pytest.param(
            lambda rid: pb.PublishRequest(event=pb.CloudEvent(id="1", source="s", spec_version="1.0", type="nonsense")),
            id="bad-type",
        ),
    ],
)
async def test_publish_rejects_bad_events(
    stub: pb_grpc.CloudEventServiceStub, database: databases.Database, bad: Any
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Publish(bad(str(uuid.uuid4())))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    async with connection(database) as conn:
        assert await conn.fetchval("SELECT count(*) FROM resources") == 0


async def test_subscribe_streams_status_and_resumes_from_cursor(
    stub: pb_grpc.CloudEventServiceStub,
    database: databases.Database,
) -> None:
    rid = str(uuid.uuid4())
    await stub.Publish(spec_event(types.CREATE_REQUEST, rid))
    stream = stub.Subscribe(pb.SubscriptionRequest(source=SOURCE))
    assert dict(await stream.initial_metadata()).get("subscription-id")
    await asyncio.sleep(0.3)  # the subscription starts "from now"
    await report(database, rid, "100")
    first = grpc_codec.from_proto(await next_status(stream))
    assert first.get_type() == types.manifestbundle_type("status", types.UPDATE_REQUEST)
    assert first.get_extension("resourceid") == rid
    assert first.get_extension("sequenceid") == "100"
    assert first.get_extension("originalsource") == SOURCE
    data = events.data_object(first)
    assert data["conditions"][0]["type"] == "Applied"
    assert data["manifestBundle"]["manifests"] == [NGINX]  # cache-less sources rebuild the work from the event
    meta = json.loads(first.get_extension("metadata"))  # NB: the work's ObjectMeta, as agents receive it
    assert (meta["name"], meta["uid"], meta["generation"], meta["resourceVersion"]) == (rid, rid, 1, "1")
    assert meta["creationTimestamp"].endswith("Z")  # the live resource's, as sdk-go's source codec writes it
    cursor = first.get_extension("maestrocursor")
    stream.cancel()

    await report(database, rid, "101")  # while the source is away
    await report(database, rid, "102")
    resumed = stub.Subscribe(pb.SubscriptionRequest(source=SOURCE), metadata=(("maestro-cursor", str(cursor)),))
    got = [grpc_codec.from_proto(await next_status(resumed)).get_extension("sequenceid") for _ in range(2)]
    assert got == ["101", "102"]
    resumed.cancel()


async def test_status_resync_sends_what_differs(
    stub: pb_grpc.CloudEventServiceStub, database: databases.Database
) -> None:
    same, differs = str(uuid.uuid4()), str(uuid.uuid4())
    for rid in (same, differs):
        await stub.Publish(spec_event(types.CREATE_REQUEST, rid))
        await report(database, rid, "7")
    stream = stub.Subscribe(pb.SubscriptionRequest(source=SOURCE))
    await stream.initial_metadata()
    await asyncio.sleep(0.3)
    resync = events.make_event(
        type=types.manifestbundle_type("status", types.RESYNC_REQUEST),
        source=SOURCE,
        data={"statusHashes": [{"resourceID": same, "statusHash": "h7"}, {"resourceID": differs, "statusHash": "old"}]},
    )
    await stub.Publish(pb.PublishRequest(event=grpc_codec.to_proto(resync)))
    answer = grpc_codec.from_proto(await next_status(stream))
    assert answer.get_extension("resourceid") == differs
    assert json.loads(answer.get_extension("metadata"))["creationTimestamp"].endswith("Z")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1):
            await next_status(stream)
    stream.cancel()
