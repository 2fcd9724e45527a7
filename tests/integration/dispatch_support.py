"""Dispatch test support: a small simulated agent, an in-process hub (dispatcher, ingest, status resync) and the
hub as a real ``maestro server`` subprocess (:class:`HubProcess`).

The agent is independent of ``agent/simulator.py`` so these tests do not move when the simulator does.

It keeps ``works`` (resource id → version, spec), applies spec events idempotently by version (older versions
are ignored and recorded in ``stale``), reports an ``Applied`` status for each applied version and ``Deleted``
for each delete, answers status resyncs, and sends a spec resync on every (re)connect, as upstream's agent does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from cloudevents.core.v1.event import CloudEvent

from protocol import cloudevents_mqtt, events, mqtt, payloads, resync, sequence, statushash, topics, types
from protocol.mqtt_config import MQTTConfig
from tests.fixtures.postgres import free_port


@dataclasses.dataclass
class Work:
    version: int
    data: dict[str, Any]


class SimAgent:
    def __init__(self, config: MQTTConfig, *, source: str, consumer: str, client_id: str) -> None:
        self.config = config
        self.source = source
        self.consumer = consumer
        self.client_id = client_id
        self.works: dict[str, Work] = {}
        self.received: list[CloudEvent] = []
        self.applied: list[tuple[str, int]] = []
        self.spec_versions: dict[str, list[int]] = {}
        """Per resource, the version of every non-delete spec event received for this consumer, in order."""
        self.deleted: list[str] = []
        self.stale: list[tuple[str, int]] = []
        self.status_resyncs = 0
        self.report_status = True
        self._seq = sequence.SequenceGenerator()
        self._broker: mqtt.Broker | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.changed = asyncio.Event()

    @property
    def status_topic(self) -> str:
        return topics.agent_events(self.source, self.consumer)

    async def start(self) -> None:
        self._broker = mqtt.Broker(
            self.config,
            client_id=self.client_id,
            subscriptions=[topics.agent_subscription(self.source, self.consumer)],
            reconnect_min=0.1,
            reconnect_max=1.0,
        )
        await self._broker.start()
        self._tasks = [
            asyncio.create_task(self._receive(self._broker), name=f"sim-agent:{self.consumer}:receive"),
            asyncio.create_task(self._resync_on_connect(self._broker), name=f"sim-agent:{self.consumer}:resync"),
        ]

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.close()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    @property
    def broker(self) -> mqtt.Broker:
        assert self._broker is not None
        return self._broker

    async def publish(self, event: CloudEvent, *, topic: str | None = None) -> None:
        message = cloudevents_mqtt.encode(event, binary=self.broker.binary_mode)
        await (await self.broker.publish(topic or self.status_topic, message))

    # --- behaviour ---------------------------------------------------------------------------------------------

    async def _resync_on_connect(self, broker: mqtt.Broker) -> None:
        async for _ in broker.connections():
            versions = [(rid, w.version) for rid, w in self.works.items()]
            for data in resync.spec_resync_payloads(versions):
                await self.publish(
                    events.make_event(
                        type=types.manifestbundle_type("spec", types.RESYNC_REQUEST),
                        source=f"{self.consumer}-work-agent",
                        data=dict(data),
                        extensions={types.EXT_CLUSTER_NAME: self.consumer, types.EXT_ORIGINAL_SOURCE: ""},
                    )
                )

    async def _receive(self, broker: mqtt.Broker) -> None:
        async for item in broker.messages():
            event = cloudevents_mqtt.decode(item.message)
            self.received.append(event)
            kind = types.event_type(event)
            if kind.subresource == types.STATUS and kind.action == types.RESYNC_REQUEST:
                self.status_resyncs += 1
                await self._answer_status_resync(event)
            elif kind.subresource == types.SPEC:
                await self._apply(event)
            self.changed.set()

    async def _apply(self, event: CloudEvent) -> None:
        if types.str_extension(event, types.EXT_CLUSTER_NAME) != self.consumer:
            return
        rid = types.str_extension(event, types.EXT_RESOURCE_ID)
        if types.timestamp_extension(event, types.EXT_DELETION_TIMESTAMP) is not None:
            work = self.works.pop(rid, None)
            self.deleted.append(rid)
            version = work.version if work else types.int_extension(event, types.EXT_RESOURCE_VERSION, default=0)
            if self.report_status:
                await self._report(rid, version, _condition("Deleted"))
            return
        version = types.int_extension(event, types.EXT_RESOURCE_VERSION)
        self.spec_versions.setdefault(rid, []).append(version)
        current = self.works.get(rid)
        if current is not None and version <= current.version:
            if version < current.version:
                self.stale.append((rid, version))
            return
        self.works[rid] = Work(version=version, data=dict(event.get_data() or {}))
        self.applied.append((rid, version))
        if self.report_status:
            await self._report(rid, version, _condition("Applied"))

    async def _report(self, rid: str, version: int, condition: dict[str, Any]) -> None:
        status = {"conditions": [condition], "resourceStatus": []}
        await self.publish(self._status_event(rid, version, status))

    def _status_event(self, rid: str, version: int, status: dict[str, Any], *, consumer: str | None = None) -> Any:
        return events.make_event(
            type=types.manifestbundle_type("status", types.UPDATE_REQUEST),
            source=f"{self.consumer}-work-agent",
            data=status,
            extensions={
                types.EXT_RESOURCE_ID: rid,
                types.EXT_RESOURCE_VERSION: version,
                types.EXT_CLUSTER_NAME: consumer or self.consumer,
                types.EXT_ORIGINAL_SOURCE: self.source,
                types.EXT_SEQUENCE_ID: self._seq.next(),
                types.EXT_STATUS_HASH: statushash.status_hash(status),
            },
        )

    async def _answer_status_resync(self, event: CloudEvent) -> None:
        hub = {e["resourceID"]: e["statusHash"] for e in payloads.read_status_resync(event.get_data())}
        if not self.report_status:
            return
        for rid, work in list(self.works.items()):
            status = {"conditions": [_condition("Applied")], "resourceStatus": []}
            if not hub or (rid in hub and hub[rid] != statushash.status_hash(status)):
                await self._report(rid, work.version, _condition("Applied"))

    async def wait_for(self, predicate: Any, *, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await self.changed.wait()


async def eventually(check: Any, *, timeout: float = 20.0, interval: float = 0.05) -> None:
    """Poll the awaitable predicate ``check()`` until it holds (database state has no event to wait on)."""
    deadline = asyncio.get_running_loop().time() + timeout
    for _ in itertools.count():
        if await check():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def _condition(kind: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True",
        "reason": kind,
        "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


class Hub:
    """The hub's transport in-process: a Broker, the dispatcher, the status ingest and the status resync."""

    def __init__(self, database: Any, config: MQTTConfig, *, source: str, client_id: str, dsn: str | None) -> None:
        from server.dispatch import ingest, publisher

        self.database = database
        self.config = config
        self.source = source
        self.client_id = client_id
        self.dsn = dsn
        self.broker = mqtt.Broker(
            config,
            client_id=client_id,
            subscriptions=[topics.server_subscription(source)],
            reconnect_min=0.1,
            reconnect_max=1.0,
        )
        pattern = f"sources/{source}/consumers/+/sourceevents"
        self.dispatcher = publisher.Dispatcher(
            database,
            self.broker,
            dsn=dsn,
            source_id=source,
            source_events=pattern,
            poll_interval=0.5,
            publish_timeout=5.0,
            backoff_min=0.1,
            backoff_max=1.0,
        )
        self.ingest = ingest.Ingest(database, self.broker, source_id=source, source_events=pattern)
        self.results: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.pattern = pattern

    async def start(self, *, dispatch: bool = True) -> None:
        from server.dispatch import resync

        await self.broker.start()

        async def ingest_loop() -> None:
            async for item in self.broker.messages():
                self.results.append(await self.ingest.handle(item))

        self._tasks = [asyncio.create_task(ingest_loop(), name="hub:ingest")]
        self._tasks.append(
            asyncio.create_task(
                resync.on_connections(
                    self.broker.connections(),
                    database=self.database,
                    publisher=self.broker,
                    source_id=self.source,
                    source_events=self.pattern,
                ),
                name="hub:resync",
            )
        )
        if dispatch:
            self.start_dispatcher()

    async def resynced(self) -> bool:
        return "resynced" in self.results

    def start_dispatcher(self) -> None:
        self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="hub:dispatch"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.broker.close()


API = "/api/maestro/v1"


def write_mqtt_config(path: Path, *, host: str, port: int, source: str, extra: str = "") -> Path:
    """A broker config file (upstream's YAML format) with upstream's topic layout for ``source``."""
    path.write_text(
        f"brokerHost: {host}:{port}\n{extra}"
        "topics:\n"
        f"  sourceEvents: sources/{source}/consumers/+/sourceevents\n"
        f"  agentEvents: sources/{source}/consumers/+/agentevents\n"
    )
    return path


class HubProcess:
    """``python -m server.cli server`` on free 127.0.0.1 ports; started and stopped by PID (SIGTERM or SIGKILL).

    :meth:`start` again after :meth:`kill` restarts it on the same ports, appending to the same log.
    """

    def __init__(
        self,
        *,
        db_url: str,
        mqtt_config_file: Path,
        source: str,
        client_id: str,
        log: Path,
        args: tuple[str, ...] = (),
    ) -> None:
        self.http, self.health, self.metrics = free_port(), free_port(), free_port()
        self.client_id = client_id
        self.log = log
        self.argv = [
            sys.executable, "-m", "server.cli", "server",
            "--db-url", db_url,
            "--mqtt-config-file", str(mqtt_config_file),
            "--source-id", source,
            "--client-id", client_id,
            "--disable-auth",
            "--no-enable-grpc-server",
            "--http-server-bindport", str(self.http),
            "--health-check-server-bindport", str(self.health),
            "--metrics-server-bindport", str(self.metrics),
            "--dispatch-poll-interval", "1",
            *args,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.http}{API}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (the instance row stays, in-flight publishes are lost)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> int | None:
        """SIGTERM, SIGKILL if it does not exit in 30 s; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def wait_ready(self, *, timeout: float = 60.0) -> None:
        """Until ``/healthcheck`` answers 200 (database, broker link and instance registration are up)."""
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.health}") as client:

            async def ready() -> bool:
                if self.process is None or self.process.poll() is not None:
                    raise AssertionError(f"maestro server exited early:\n{self.output()}")
                try:
                    return (await client.get("/healthcheck")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, timeout=timeout, interval=0.1)

    async def metric(self, name: str) -> float:
        """The sum of the samples of Prometheus metric ``name`` (all label sets) on the metrics port."""
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{self.metrics}/metrics")).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total


async def until_done(
    client: httpx.AsyncClient, method: str, url: str, *, ok: tuple[int, ...], json: Any = None, timeout: float = 90.0
) -> httpx.Response:
    """Send an idempotent request until it gets one of the ``ok`` statuses, riding out a hub that is down
    (connection refused, a reset mid-request, 5xx) for up to ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            response = await client.request(method, url, json=json)
            if response.status_code in ok:
                return response
            if response.status_code < 500:
                raise AssertionError(f"{method} {url}: {response.status_code} {response.text}")
        except httpx.TransportError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{method} {url} did not succeed within {timeout}s")
        await asyncio.sleep(0.1)
