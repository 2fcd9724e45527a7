"""Dispatch test support: the product's simulated agent (``agent/simulator.py``, what ``maestro agent --simulate``
runs) with test-friendly reconnect timings, an in-process hub (dispatcher, ingest, status resync) and the hub as a
real ``maestro server`` subprocess (:class:`HubProcess`).

The agent is deliberately the product's, not a test double: a protocol fix must land in what users run and be
exercised here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from agent.simulator import SimulatedAgent
from protocol import mqtt, topics
from protocol.backoff import Backoff
from protocol.mqtt_config import MQTTConfig
from tests.fixtures.postgres import free_port


def simulated_agent(
    config: MQTTConfig, *, source: str, consumer: str, client_id: str, **options: Any
) -> SimulatedAgent:
    """The product's simulated agent, reconnecting quickly (tests restart brokers and hubs under it)."""
    broker_options = {"reconnect": Backoff(min=0.1, max=1.0)}
    return SimulatedAgent(
        consumer=consumer, config=config, source=source, client_id=client_id, broker_options=broker_options, **options
    )


def applied(agent: SimulatedAgent, resource_id: str) -> list[int]:
    """The versions ``agent`` applied for ``resource_id``, in order (empty before its first spec event)."""
    history = agent.history.get(resource_id)
    return history.applied if history is not None else []


async def eventually(check: Any, *, timeout: float = 20.0, interval: float = 0.05) -> None:
    """Poll the awaitable predicate ``check()`` until it holds (database state has no event to wait on)."""
    deadline = asyncio.get_running_loop().time() + timeout
    for _ in itertools.count():
        if await check():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


class Hub:
    """The hub's transport in-process: a Broker, the dispatcher, the status ingest and the status resync."""

    def __init__(self, database: Any, config: MQTTConfig, *, source: str, client_id: str, dsn: str | None) -> None:
        from server.dispatch import ingest, publisher
        from server.settings import Settings

        self.settings = Settings.of(
            source_id=source,
            client_id=client_id,
            mqtt_reconnect=Backoff(min=0.1, max=1.0),
            dispatch_poll_interval=0.5,
            publish_timeout=5.0,
            publish_backoff=Backoff(min=0.1, max=1.0),
        )
        self.database = database
        self.config = config
        self.source = source
        self.client_id = client_id
        self.dsn = dsn
        self.broker = mqtt.Broker(
            config,
            client_id=client_id,
            subscriptions=[topics.server_subscription(source)],
            reconnect=self.settings.transport.mqtt_reconnect,
        )
        pattern = f"sources/{source}/consumers/+/sourceevents"
        self.dispatcher = publisher.Dispatcher(database, self.broker, self.settings, dsn=dsn, source_events=pattern)
        self.ingest = ingest.Ingest(database, self.broker, self.settings, source_events=pattern)
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
                    settings=self.settings,
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
