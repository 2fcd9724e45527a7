"""The upstream Go agent reads what our hub sends: every spec event a real hub publishes for a bundle's life (create,
update, delete) and a spec resync's delete marker, decoded by ``open-cluster-management.io/sdk-go``'s work-agent
``ManifestBundleCodec`` (the code the Go agent runs on each event; ``gocodec/`` wraps it in a filter that reads
structured CloudEvents on stdin and prints the decoded work's metadata or the error).

The codec is built once per machine from Go modules (Go ≥ 1.26 and the module proxy, as the control plane) into
the e2e cache, keyed by the wrapper's files.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.core.v1.event import CloudEvent

from protocol import cloudevents_mqtt, events, mqtt, types
from tests.e2e.hub_support import E2EHub
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames

GOCODEC = Path(__file__).resolve().parent / "gocodec"
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "default"}}


@pytest.fixture(scope="session")
def gocodec() -> Path:
    files = [GOCODEC / name for name in ("go.mod", "go.sum", "main.go")]
    key = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]
    cache = Path(
        os.environ.get("MAESTRO_E2E_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "maestro-e2e"
    )
    binary = cache.expanduser() / f"gocodec-{key}" / "gocodec"
    if not binary.exists():
        go = shutil.which(os.environ.get("GO", "go")) or "/usr/local/go/bin/go"
        env = {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -buildvcs=false"}
        built = subprocess.run(
            [go, "build", "-o", str(binary), "."], cwd=GOCODEC, env=env, capture_output=True, text=True, timeout=1200
        )
        if built.returncode != 0:
            pytest.fail(f"building the sdk-go codec failed:\n{built.stderr[-4000:]}", pytrace=False)
    return binary


def go_decode(binary: Path, received: list[CloudEvent]) -> list[dict[str, Any]]:
    """Each event as the Go agent decodes it (structured JSON in, one result per line out)."""
    lines = "".join(cloudevents_mqtt.encode(e, binary=False).payload.decode() + "\n" for e in received)
    out = subprocess.run([str(binary)], input=lines, capture_output=True, text=True, timeout=60, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


async def test_the_go_agent_codec_decodes_every_spec_event(
    gocodec: Path, e2e_hub: E2EHub, rest: httpx.AsyncClient, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> None:
    consumer = e2e_hub.consumer
    await e2e_hub.create_consumer()
    config = mosquitto.config(source=e2e_hub.source, consumer=consumer)
    async with mqtt.Broker(
        config, client_id=mqtt_names.client_id("go-agent"), subscriptions=[config.topics.source_events]
    ) as agent:
        received: list[CloudEvent] = []

        async def next_spec() -> CloudEvent:
            async for item in agent.messages():
                event = cloudevents_mqtt.decode(item.message)
                if types.event_type(event).subresource == types.SPEC:
                    received.append(event)
                    return event
            raise AssertionError("the broker link closed")

        body = {
            "consumer_name": consumer,
            "metadata": {"labels": {"app": "web"}, "annotations": {"team": "a"}},
            "manifests": [CONFIGMAP],
        }
        posted = await rest.post("/resource-bundles", json=body)
        assert posted.status_code == 201, posted.text
        rid = posted.json()["id"]
        async with asyncio.timeout(20):
            await next_spec()
            put = await rest.put(f"/resource-bundles/{rid}", json={"version": 1, "manifests": [CONFIGMAP]})
            assert put.status_code == 200, put.text
            await next_spec()
            assert (await rest.delete(f"/resource-bundles/{rid}")).status_code == 204
            await next_spec()
            # The agent lists a work the hub never had: the hub answers with a delete marker.
            gone = str(uuid.uuid4())
            resync = events.make_event(
                type=types.manifestbundle_type("spec", types.RESYNC_REQUEST),
                source=f"{consumer}-work-agent",
                data={"resourceVersions": [{"resourceID": gone, "resourceVersion": 4}]},
                extensions={types.EXT_CLUSTER_NAME: consumer, types.EXT_ORIGINAL_SOURCE: ""},
            )
            await (await agent.publish(config.topics.agent_events, cloudevents_mqtt.encode(resync)))
            while (await next_spec()).get_extension(types.EXT_RESOURCE_ID) != gone:
                pass  # NB: the answer also re-sends the delete of the bundle still being deleted

    decoded = go_decode(gocodec, received)
    assert [d.get("error") for d in decoded] == [None] * len(received), decoded
    create, update, delete, *_, marker = (d["metadata"] for d in decoded)
    assert [d["manifests"] for d in decoded] == [1, 1] + [0] * (len(received) - 2)
    assert (create["name"], create["uid"], create["namespace"], create["generation"]) == (rid, rid, consumer, 1)
    assert create["labels"]["app"] == "web"
    assert create["annotations"]["team"] == "a"
    assert create["creationTimestamp"] == posted.json()["created_at"][:19] + "Z"
    assert update["generation"] == 2
    assert delete["generation"] == 2
    assert delete["deletionTimestamp"]
    assert (marker["name"], marker["generation"]) == (gone, 4)
    assert marker["deletionTimestamp"]
