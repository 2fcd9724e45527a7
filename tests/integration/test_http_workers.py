"""``maestro server --http-workers 2``: the REST port served by two worker processes of the hub.

Requests are answered by both workers (their access lines name them by pid, and both are the hub's children) and
counted in the hub's ``/metrics``; a watch served by a worker sees the status that the hub process stored for a
resource created through the REST port; SIGTERM stops the hub and its workers; a worker killed makes the hub exit
1, and a hub killed takes its workers with it (no orphan serves the port).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.integration.client_support import NGINX, hub_process
from tests.integration.dispatch_support import HubProcess, eventually, simulated_agent

ACCESS = re.compile(r"server\.http\.access: (\S+) (\S+) (\d+) .* worker=(\d+) pid=(\d+)$", re.MULTILINE)


@pytest.fixture
async def hub(
    tmp_path: Path, db_url: str, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> AsyncIterator[HubProcess]:
    # NB: no status poll to speak of: a worker's watch sees a status only through its own LISTEN.
    args = ("--http-workers", "2", "--dispatch-poll-interval", "300")
    process = hub_process(tmp_path, db_url=db_url, mosquitto=mosquitto, source=mqtt_names.source, args=args)
    process.start()
    try:
        await process.wait_ready()
        yield process
    finally:
        process.stop()


def children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def gone(pids: set[int]) -> None:
    async def check() -> bool:
        return not any(alive(pid) for pid in pids)

    await eventually(check, timeout=30, interval=0.1)


async def test_requests_are_served_by_two_worker_processes(hub: HubProcess) -> None:
    workers = children(hub.pid)
    assert len(workers) == 2
    served: set[int] = set()
    for _ in range(200):  # NB: each on a new connection; the kernel gives it to whichever worker accepts first
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{hub.api}/consumers")).status_code == 200
        served = {int(m[4]) for m in ACCESS.findall(hub.output())}
        if len(served) == 2:
            break
    assert served == workers
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{hub.health}/healthcheck")).status_code == 200

    assert hub.stop() == 0, hub.output()[-3000:]
    await gone(workers)


async def test_metrics_count_the_requests_of_every_worker(hub: HubProcess) -> None:
    sent, served = 0, set()
    while len(served) < 2 and sent < 200:  # NB: new connections until both workers have answered some
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{hub.api}/consumers")).status_code == 200
        sent += 1
        served = {int(m[4]) for m in ACCESS.findall(hub.output())}
    assert len(served) == 2
    async with httpx.AsyncClient() as client:
        exposed = (await client.get(f"http://127.0.0.1:{hub.metrics}/metrics")).text
    series = {"method": "GET", "path": "/api/maestro/v1/consumers", "code": "200"}
    counted = {
        sample.name: sample.value
        for family in text_string_to_metric_families(exposed)
        for sample in family.samples
        if sample.labels == series
    }
    assert counted["rest_api_inbound_request_count_total"] == sent
    assert counted["rest_api_inbound_request_duration_count"] == sent
    # NB: one family, not one per process
    assert exposed.count("# TYPE rest_api_inbound_request_count_total counter") == 1


async def test_a_watch_on_a_worker_sees_the_status_of_a_create(
    hub: HubProcess, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> None:
    consumer = mqtt_names.consumer
    config = mosquitto.config(source=mqtt_names.source, consumer=consumer)
    agent = simulated_agent(config, source=mqtt_names.source, consumer=consumer, client_id=mqtt_names.client_id("a"))
    async with agent, httpx.AsyncClient(timeout=30) as client, httpx.AsyncClient(timeout=30) as watcher:
        assert (await client.post(f"{hub.api}/consumers", json={"name": consumer})).status_code == 201
        params = {"watch": "true", "consumer_name": consumer}
        async with watcher.stream("GET", f"{hub.api}/resource-bundles", params=params) as stream:
            assert stream.status_code == 200
            body = {"consumer_name": consumer, "manifest": NGINX}
            created = await client.post(f"{hub.api}/resources", json=body)
            assert created.status_code == 201, created.text
            async with asyncio.timeout(60):
                async for line in stream.aiter_lines():
                    if line.strip():
                        event = json.loads(line)
                        break
    assert (event["type"], event["object"]["id"]) == ("StatusUpdate", created.json()["id"])


async def test_a_killed_worker_stops_the_hub_with_status_1(hub: HubProcess) -> None:
    workers = children(hub.pid)
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    assert hub.process is not None
    assert await asyncio.to_thread(hub.process.wait, 60) == 1
    assert f"(pid {victim}) was killed by signal 9" in hub.output()
    await gone(workers)


async def test_a_killed_hub_takes_its_workers_with_it(hub: HubProcess) -> None:
    workers = children(hub.pid)
    assert len(workers) == 2
    hub.kill()
    await gone(workers)


def test_a_worker_count_out_of_range_is_refused_before_anything_starts() -> None:
    url = "postgresql://nobody@127.0.0.1:1/none"
    cmd = [sys.executable, "-m", "server.cli", "server", "--http-workers", "0", "--db-url", url]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "--http-workers 0: expected 1 to 64 processes" in result.stderr
