"""``maestro mqtt watch`` (a subprocess on the session's Mosquitto) prints a consumer's CloudEvents in order, in
both content modes; ``maestro mqtt acl``, loaded into a real Mosquitto with a password file, keeps each agent to
its own topics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import databases
import pytest

from protocol import cloudevents_mqtt, events, mqtt, topics, types
from protocol.errors import ConnectError
from server.services import consumers, resources
from server.store import db as store_db
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.fixtures.postgres import free_port
from tests.integration.client_support import argv, line_matching, maestro, spawn, stop
from tests.integration.dispatch_support import Hub, applied, eventually, simulated_agent, write_mqtt_config

pytestmark = pytest.mark.timeout(30)


def configmap(value: str) -> dict[str, Any]:
    meta = {"name": "cm1", "namespace": "default"}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"v": value}}


async def observed(database: databases.Database, rid: str) -> int | None:
    async with store_db.connection(database) as conn:
        row = await conn.fetchrow("SELECT status FROM resources WHERE id = $1", rid)
    if row is None:
        return -1
    return (row["status"] or {}).get("ObservedVersion")


@contextlib.asynccontextmanager
async def watching(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await spawn("mqtt", "watch", *args)
    try:
        ready, _ = await line_matching(process.stderr, lambda line: line.startswith("maestro: watching"))
        assert "sourceevents and " in ready
        yield process
    finally:
        await stop(process)


async def test_watch_shows_create_update_delete_in_order(
    hub: Hub, database: databases.Database, mosquitto: MosquittoServer, mqtt_names: MQTTNames, tmp_path: Path
) -> None:
    source, consumer = mqtt_names.source, mqtt_names.consumer
    config_file = write_mqtt_config(tmp_path / "mqtt.yaml", host=mosquitto.host, port=mosquitto.port, source=source)
    marker = str(uuid.uuid4())
    async with (
        watching("--consumer", consumer, "--mqtt-config-file", str(config_file)) as table,
        watching("--mqtt-config-file", str(config_file), "-o", "json") as everything,
    ):
        await consumers.create(database, {"name": consumer})
        agent_config = mosquitto.config(source=source, consumer=consumer)
        agent = simulated_agent(agent_config, source=source, consumer=consumer, client_id=mqtt_names.client_id("a"))
        async with agent:
            await eventually(hub.resynced)
            body = {"consumer_name": consumer, "manifest": configmap("1")}
            rid = (await resources.create_single(database, body, source=source)).row.id
            await eventually(lambda: _is(observed(database, rid), 1))
            await resources.patch_single(database, rid, {"version": 1, "manifest": configmap("2")})
            await eventually(lambda: _is(observed(database, rid), 2))
            await resources.mark_deleting(database, rid)
            await eventually(lambda: _is(observed(database, rid), -1))
            assert applied(agent, rid) == [1, 2]

        # A status in structured mode (as an MQTT 3.1.1 agent sends it) ends the story.
        status = events.make_event(
            type=types.manifestbundle_type("status", types.UPDATE_REQUEST),
            source=f"{consumer}-work-agent",
            data={"conditions": [{"type": "Applied", "status": "True"}]},
            extensions={"resourceid": marker, "resourceversion": 7, "sequenceid": "42", "originalsource": source},
        )
        sender_config = mosquitto.config(source=source, consumer=consumer, protocol_version=3, session_expiry=0)
        async with mqtt.Broker(sender_config, client_id=mqtt_names.client_id("sender")) as sender:
            message = cloudevents_mqtt.encode(status, binary=False)
            await (await sender.publish(topics.agent_events(source, consumer), message))

        last, lines = await line_matching(table.stdout, lambda line: marker in line)
        seen = [line.split()[1:5] for line in lines if rid in line or "resync_request" in line]
        assert seen == [
            [consumer, "agentevents", "spec.resync_request", "-"],
            [consumer, "sourceevents", "spec.create_request", rid],
            [consumer, "agentevents", "status.update_request", rid],
            [consumer, "sourceevents", "spec.update_request", rid],
            [consumer, "agentevents", "status.update_request", rid],
            [consumer, "sourceevents", "spec.delete_request", rid],
            [consumer, "agentevents", "status.update_request", rid],
        ], "".join(lines)
        mine = [line for line in lines if rid in line]
        assert mine[0].rstrip().endswith("v1  seq=-  1 manifest: ConfigMap default/cm1")
        assert mine[1].rstrip().endswith("Applied=True Available=True")
        assert " v2 " in mine[2]
        assert mine[3].rstrip().endswith("v2  " + mine[3].split("  ")[-2] + "  Applied=True Available=True")
        assert mine[4].rstrip().endswith("seq=-  delete")  # NB: a delete_request carries no spec, as upstream
        assert mine[5].rstrip().endswith("Deleted=True")
        assert last.split()[1:8] == [
            consumer,
            "agentevents",
            "status.update_request",
            marker,
            "v7",
            "seq=42",
            "Applied=True",
        ]

        _, json_lines = await line_matching(everything.stdout, lambda line: marker in line)
        decoded = [json.loads(line) for line in json_lines]
        ours = [e for e in decoded if e.get("resourceid") == rid]
        assert [e["type"].rsplit(".", 2)[-2:] for e in ours] == [
            ["spec", "create_request"],
            ["status", "update_request"],
            ["spec", "update_request"],
            ["status", "update_request"],
            ["spec", "delete_request"],
            ["status", "update_request"],
        ]
        assert ours[0]["data"]["manifests"] == [configmap("1")]
        assert ours[0]["clustername"] == consumer


async def _is(value: Any, expected: object) -> bool:
    return bool(await value == expected)


async def test_watch_errors_are_one_line(tmp_path: Path) -> None:
    config = write_mqtt_config(tmp_path / "mqtt.yaml", host="127.0.0.1", port=free_port(), source="maestro")
    refused = await maestro("mqtt", "watch", "--mqtt-config-file", str(config), "--timeout", "1s")
    assert refused.code == 1, refused
    assert len(refused.err_lines) == 1, refused
    assert "could not connect" in refused.err
    missing = await maestro("mqtt", "watch", "--mqtt-config-file", str(tmp_path / "nope.yaml"))
    assert missing.code == 1
    assert "--mqtt-config-file" in missing.err
    assert len(missing.err_lines) == 1
    bad_name = await maestro("mqtt", "watch", "--consumer", "Bad/Name", "--mqtt-config-file", str(config))
    assert bad_name.code == 1
    assert "invalid consumer" in bad_name.err


# -- the ACL in a real Mosquitto ----------------------------------------------------------------------


PASSWORDS = {"maestro": "hub-secret", "cluster1-agent": "one-secret", "cluster2-agent": "two-secret"}


@pytest.fixture
def confined() -> Iterator[MosquittoServer]:
    """A Mosquitto with no anonymous access, the three users above, and the ACL ``maestro mqtt acl`` prints."""
    acl = subprocess.run(
        argv("mqtt", "acl", "--consumers", "cluster1,cluster2"), capture_output=True, text=True, check=True, timeout=30
    )
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    # NB: not under tmp_path, which the mosquitto user (it drops root) cannot enter.
    directory = Path(tempfile.mkdtemp(prefix="maestro-acl-"))
    (directory / "acl").write_text(acl.stdout)
    for i, (user, password) in enumerate(PASSWORDS.items()):
        create = ["-c"] if i == 0 else []
        subprocess.run([passwd, *create, "-b", str(directory / "passwd"), user, password], check=True)
    server = MosquittoServer(binary=binary, directory=directory)
    server.config_file.write_text(
        f"listener {server.port} 127.0.0.1\n"
        "allow_anonymous false\n"
        f"password_file {directory / 'passwd'}\n"
        f"acl_file {directory / 'acl'}\n"
        "use_username_as_clientid true\n"
        f"log_dest file {directory / 'mosquitto.log'}\n"
    )
    if os.geteuid() == 0:  # NB: mosquitto drops root for the mosquitto user, who must read the files.
        user = pwd.getpwnam("mosquitto")
        for path in (directory / "acl", directory / "passwd"):
            os.chown(path, user.pw_uid, user.pw_gid)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def login(
    server: MosquittoServer, user: str | None, *, password: str | None = None, subscribe: str | None = None
) -> mqtt.Broker:
    config = server.config(
        username=user, password=password or (PASSWORDS.get(user) if user else None), session_expiry=0, dial_timeout=3.0
    )
    return mqtt.Broker(
        config, client_id=f"{user}-{uuid.uuid4().hex[:6]}", subscriptions=[subscribe] if subscribe else [],
        first_connect_timeout=3.0,
    )  # fmt: skip


async def test_acl_keeps_each_agent_to_its_own_topics(confined: MosquittoServer) -> None:
    one_spec, one_status = topics.source_events("maestro", "cluster1"), topics.agent_events("maestro", "cluster1")
    two_spec, two_status = topics.source_events("maestro", "cluster2"), topics.agent_events("maestro", "cluster2")
    hub_filter = topics.shared(topics.server_subscription("maestro"), "statussubscribers")

    for user, password in ((None, None), ("cluster2-agent", "one-secret")):
        with pytest.raises(ConnectError):
            await login(confined, user, password=password).start()

    async with (
        login(confined, "maestro", subscribe=hub_filter) as hub,
        login(confined, "cluster1-agent", subscribe=one_spec) as one,
        login(confined, "cluster2-agent", subscribe=one_spec) as two,
    ):
        await two.subscribe(two_spec)
        # The hub's spec reaches cluster1's agent, and not cluster2's, which reads only its own (the barrier).
        await (await hub.publish(one_spec, mqtt_message(b"spec for cluster1")))
        assert (await anext_within(one)).message.payload == b"spec for cluster1"
        await (await hub.publish(two_spec, mqtt_message(b"spec for cluster2")))
        received = await anext_within(two)
        assert (received.topic, received.message.payload) == (two_spec, b"spec for cluster2")
        # cluster2 cannot forge cluster1's status; what it writes to its own topic arrives, after nothing else.
        await (await two.publish(one_status, mqtt_message(b"forged by cluster2")))
        await (await two.publish(two_status, mqtt_message(b"cluster2's own")))
        received = await anext_within(hub)
        assert (received.topic, received.message.payload) == (two_status, b"cluster2's own")
        await (await one.publish(one_status, mqtt_message(b"cluster1's own")))
        received = await anext_within(hub)
        assert (received.topic, received.message.payload) == (one_status, b"cluster1's own")
        # cluster1's agent may not write specs, not even its own.
        await (await one.publish(one_spec, mqtt_message(b"forged spec")))
        await (await hub.publish(one_spec, mqtt_message(b"second spec")))
        assert (await anext_within(one)).message.payload == b"second spec"


async def test_an_agents_credentials_cannot_take_over_the_hubs_connection(confined: MosquittoServer) -> None:
    """Issue 8, finding 3: with ``use_username_as_clientid`` (the ACL output says so) the broker names each client
    after its user, so cluster1's agent connecting as client id ``maestro`` does not drop the hub."""
    hub_config = confined.config(username="maestro", password=PASSWORDS["maestro"], session_expiry=0, dial_timeout=3.0)
    one_config = confined.config(
        username="cluster1-agent", password=PASSWORDS["cluster1-agent"], session_expiry=0, dial_timeout=3.0
    )
    async with mqtt.Broker(hub_config, client_id="maestro") as hub:
        for _ in range(3):
            async with mqtt.Broker(one_config, client_id="maestro"):
                await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        assert hub.is_connected
        assert hub.connection is not None
        assert hub.connection.generation == 1  # never dropped, never reconnected


def mqtt_message(payload: bytes) -> cloudevents_mqtt.MQTTMessage:
    return cloudevents_mqtt.MQTTMessage(payload=payload)


async def anext_within(broker: mqtt.Broker, timeout: float = 5.0) -> mqtt.Received:
    async with asyncio.timeout(timeout):
        return await anext(aiter(broker.messages()))
