"""``maestro resourcebundle status --watch`` follows the hub's status stream and resumes from its last cursor when
the hub restarts: what happened while it was away is printed, once, and nothing is relisted."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.integration.client_support import NGINX, hub_process, line_matching, maestro, next_line, spawn, stop
from tests.integration.dispatch_support import HubProcess, simulated_agent

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def hub(
    tmp_path: Path, db_url: str, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> AsyncIterator[HubProcess]:
    process = hub_process(tmp_path, db_url=db_url, mosquitto=mosquitto, source=mqtt_names.source)
    process.start()
    try:
        await process.wait_ready()
        yield process
    finally:
        assert process.stop() == 0, process.output()[-3000:]


def scaled(replicas: int) -> dict[str, object]:
    return {**NGINX, "spec": {**NGINX["spec"], "replicas": replicas}}


async def test_watch_resumes_after_the_hub_restarts(
    hub: HubProcess, mosquitto: MosquittoServer, mqtt_names: MQTTNames, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{hub.http}"
    consumer = mqtt_names.consumer
    manifest = tmp_path / "nginx.yaml"
    name = "web"

    async def apply(replicas: int) -> None:
        manifest.write_text(yaml.safe_dump(scaled(replicas)))
        args = ("-f", str(manifest), "--consumer", consumer, "--name", name, "--wait")
        result = await maestro("resourcebundle", "apply", *args, rest_url=url)
        assert result.code == 0, result.err

    config = mosquitto.config(source=mqtt_names.source, consumer=consumer)
    agent = simulated_agent(config, source=mqtt_names.source, consumer=consumer, client_id=mqtt_names.client_id("a"))
    assert (await maestro("consumer", "create", consumer, rest_url=url)).code == 0
    async with agent:
        await apply(1)
        paused = await spawn("resourcebundle", "status", name, "--watch", "-o", "json", rest_url=url)
        follower = await spawn("resourcebundle", "status", "--watch", "--consumer", consumer, rest_url=url)
        try:
            current = json.loads(await next_line(paused.stdout))
            assert (current["type"], current["object"]["version"], current["cursor"]) == ("Current", 1, None)
            assert current["object"]["status"]["ObservedVersion"] == 1
            table_current = await next_line(follower.stdout)
            assert table_current.split()[:5] == ["Current", name, consumer, "v1", "Available:"]

            await apply(2)
            update = json.loads(await next_line(paused.stdout))
            assert (update["type"], update["object"]["version"]) == ("StatusUpdate", 2)
            assert update["object"]["status"]["ObservedVersion"] == 2
            cursor = update["cursor"]

            # The watcher sleeps through a hub crash and restart, and through an update made meanwhile.
            os.kill(paused.pid, signal.SIGSTOP)
            hub.kill()
            hub.start()
            await hub.wait_ready()
            await apply(3)
            os.kill(paused.pid, signal.SIGCONT)

            resumed = json.loads(await next_line(paused.stdout))
            assert (resumed["type"], resumed["object"]["version"]) == ("StatusUpdate", 3)  # no relist, no repeat
            assert resumed["object"]["status"]["ObservedVersion"] == 3
            assert resumed["cursor"] != cursor
            notice, _ = await line_matching(paused.stderr, lambda line: "watch interrupted" in line)
            assert f"resuming after cursor {cursor}" in notice

            # The table watch stayed connected through the restart on its own and shows the same story.
            line, before = await line_matching(follower.stdout, lambda line: " v3 " in line)
            assert line.split()[:5] == ["StatusUpdate", name, consumer, "v3", "Available:"]
            assert line.rstrip().endswith("Applied=True Available=True")
            assert [b.split()[:4] for b in before] == [["StatusUpdate", name, consumer, "v2"]]
        finally:
            await stop(paused)
            await stop(follower)
