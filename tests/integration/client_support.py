"""Support for the CLI's tests: ``maestro`` run as a user runs it (a subprocess through the ``maestro.commands``
entry points), asynchronously so that a simulated agent in the test's loop keeps answering meanwhile."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fixtures.mosquitto import MosquittoServer
from tests.fixtures.postgres import PostgresServer
from tests.integration.dispatch_support import HubProcess, write_mqtt_config

NGINX: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx", "namespace": "default"},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "nginx"}},
             "template": {"metadata": {"labels": {"app": "nginx"}},
                          "spec": {"containers": [{"image": "nginxinc/nginx-unprivileged", "name": "nginx"}]}}},
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def environment(rest_url: str | None = None, **extra: str) -> dict[str, str]:
    """The test process's environment without any ``MAESTRO_*`` setting, plus the hub's URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAESTRO_")}
    if rest_url:
        env["MAESTRO_REST_URL"] = rest_url
    return {**env, **extra}


def argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "server.cli", *args]


async def maestro(
    *args: str, rest_url: str | None = None, stdin: str | None = None, timeout: float = 30.0, **env: str
) -> Result:
    """Run ``maestro ARGS`` to completion."""
    process = await asyncio.create_subprocess_exec(
        *argv(*args),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment(rest_url, **env),
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate(stdin.encode() if stdin is not None else None)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


async def spawn(*args: str, rest_url: str | None = None) -> asyncio.subprocess.Process:
    """Start ``maestro ARGS`` in the background (a watch); stop it with :func:`stop`."""
    return await asyncio.create_subprocess_exec(
        *argv(*args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment(rest_url),
    )


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.wait()


async def next_line(stream: asyncio.StreamReader | None, *, timeout: float = 20.0) -> str:
    assert stream is not None
    async with asyncio.timeout(timeout):
        line = await stream.readline()
    if not line:
        raise EOFError("the process closed its output")
    return line.decode()


async def line_matching(
    stream: asyncio.StreamReader | None, predicate: Callable[[str], bool], *, timeout: float = 20.0
) -> tuple[str, list[str]]:
    """Read lines until one satisfies ``predicate``; returns it and every line read before it."""
    seen: list[str] = []
    async with asyncio.timeout(timeout):
        while True:
            line = await next_line(stream, timeout=timeout)
            if predicate(line):
                return line, seen
            seen.append(line)


def database(pg_server: PostgresServer, template: str) -> tuple[str, Callable[[], None]]:
    """A fresh migrated database (for fixtures wider than one test) and the function that drops it."""
    import psycopg

    name = f"cli_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")  # type: ignore[arg-type]

    def drop() -> None:
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]

    return pg_server.dsn(name), drop


def hub_process(
    directory: Path, *, db_url: str, mosquitto: MosquittoServer, source: str, args: tuple[str, ...] = ()
) -> HubProcess:
    """A ``maestro server`` (not started) on the session broker with its own source id."""
    config = write_mqtt_config(directory / "mqtt.yaml", host=mosquitto.host, port=mosquitto.port, source=source)
    return HubProcess(
        db_url=db_url,
        mqtt_config_file=config,
        source=source,
        client_id=f"hub-{source}",
        log=directory / "hub.log",
        args=args,
    )
