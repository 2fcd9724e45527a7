"""Support for agent e2e tests: the hub and the agent as real processes, next to a real Kubernetes control plane.

- :class:`E2EHub`: what the ``e2e_hub`` fixture yields, a ``maestro server`` process (:class:`HubProcess` from
  ``tests.integration.dispatch_support``, gRPC enabled) against a fresh PostgreSQL database and the session's
  Mosquitto broker, with one source and one consumer name unique to the test.
- :class:`AgentProcess`: ``python -m server.cli agent ...`` (the product's ``maestro agent``) against the e2e
  cluster, its stdout and stderr in a log file; started and stopped by PID.

Nothing here imports server/ or agent/ code: both run as processes. Only ``protocol`` and the integration test
helpers are imported.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.postgres import free_port
from tests.integration.dispatch_support import HubProcess, eventually, write_mqtt_config

__all__ = [
    "REPO_ROOT",
    "AgentProcess",
    "E2EHub",
    "HubProcess",
    "agent_mqtt_yaml",
    "eventually",
    "free_port",
    "write_mqtt_config",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_GRACE = 30.0  # seconds between SIGTERM and SIGKILL
LOG_TAIL_CHARS = 4000


def agent_mqtt_yaml(*, host: str, port: int, source: str, consumer: str, extra: str = "") -> str:
    """An agent's broker config in upstream's YAML format: the topics of one source and one consumer."""
    return (
        f"brokerHost: {host}:{port}\n{extra}"
        "topics:\n"
        f"  sourceEvents: sources/{source}/consumers/{consumer}/sourceevents\n"
        f"  agentEvents: sources/{source}/consumers/{consumer}/agentevents\n"
    )


@dataclass
class E2EHub:
    """A running ``maestro server`` for one test (see the ``e2e_hub`` fixture)."""

    process: HubProcess
    """The server process: ``kill()``/``start()`` restart it on the same ports, ``output()`` is its log."""
    grpc_port: int
    source: str
    """The hub's ``--source-id``."""
    consumer: str
    """A consumer name unique to this test; not registered until :meth:`create_consumer`."""
    mqtt_config_file: Path
    """The hub's broker config (topics with the ``+`` consumer wildcard)."""
    broker_host: str
    broker_port: int

    @property
    def api(self) -> str:
        """REST base URL, e.g. ``http://127.0.0.1:PORT/api/maestro/v1``."""
        return self.process.api

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def agent_mqtt_config(self, path: Path, *, consumer: str | None = None, extra: str = "") -> Path:
        """Write the agent's broker config (upstream's YAML format) for ``consumer`` (default: ours) to ``path``.

        ``extra`` is inserted verbatim as top-level YAML lines (e.g. ``"keepAlive: 5\\n"``).
        """
        path.write_text(
            agent_mqtt_yaml(
                host=self.broker_host,
                port=self.broker_port,
                source=self.source,
                consumer=consumer or self.consumer,
                extra=extra,
            )
        )
        return path

    def rest(self, *, timeout: float = 20.0, **kwargs: Any) -> httpx.AsyncClient:
        """A new (unopened) AsyncClient on the REST API; use it as ``async with hub.rest() as client``."""
        return httpx.AsyncClient(base_url=self.api, timeout=timeout, **kwargs)

    async def create_consumer(self, name: str | None = None, *, labels: dict[str, str] | None = None) -> Any:
        """POST /consumers for ``name`` (default: ours); returns the created consumer's JSON."""
        body: dict[str, Any] = {"name": name or self.consumer}
        if labels:
            body["labels"] = labels
        async with self.rest() as client:
            response = await client.post("/consumers", json=body)
        if response.status_code != 201:
            raise AssertionError(f"POST /consumers {body}: {response.status_code} {response.text}")
        return response.json()


def _set_pdeathsig() -> None:
    """In the child: SIGKILL when the test run dies, so no agent outlives it (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class AgentProcess:
    """``python -m server.cli agent`` (``maestro agent``) for one consumer, on a free healthz port.

    Output (stdout and stderr) goes to ``log``; :meth:`start` again after :meth:`kill` or :meth:`stop` restarts it
    with the same arguments and port, appending to the same log.
    """

    def __init__(
        self,
        *,
        consumer: str,
        workload_source_config: Path,
        kubeconfig: str | Path,
        agent_namespace: str,
        client_id: str,
        log: Path,
        healthz_port: int | None = None,
        extra_args: tuple[str, ...] | list[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.consumer = consumer
        self.agent_namespace = agent_namespace
        self.client_id = client_id
        self.log = log
        self.healthz_port = healthz_port if healthz_port is not None else free_port()
        self.env = env
        self.argv = [
            sys.executable, "-m", "server.cli", "agent",
            "--consumer-name", consumer,
            "--workload-source-config", str(workload_source_config),
            "--kubeconfig", str(kubeconfig),
            "--agent-namespace", agent_namespace,
            "--install-crd",
            "--healthz-bindport", str(self.healthz_port),
            "--cloudevents-client-id", client_id,
            *extra_args,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.killed = False
        """True after :meth:`kill` (until the next :meth:`start`): a non-zero exit code is then expected."""

    @property
    def healthz_url(self) -> str:
        return f"http://127.0.0.1:{self.healthz_port}/healthz"

    @property
    def pid(self) -> int:
        assert self.process is not None, "agent not started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"agent {self.client_id} is already running (pid {self.pid})")
        self.killed = False
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=self.env,
                # PR_SET_PDEATHSIG fires when the forking *thread* exits: only use it from the main thread.
                preexec_fn=_set_pdeathsig if threading.current_thread() is threading.main_thread() else None,
            )

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (a crash, as far as the agent can tell)."""
        if self.process is not None and self.process.poll() is None:
            self.killed = True
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, *, timeout: float = STOP_GRACE) -> int | None:
        """SIGTERM, SIGKILL if it has not exited after ``timeout`` s; returns the exit code (None if never
        started). A process that already exited is left as is and its exit code returned."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        """The end of the log, headed by its path, for assertion messages."""
        return f"--- last {chars} characters of {self.log} ---\n{self.output()[-chars:]}"

    async def wait_healthy(self, timeout: float = 60.0) -> None:
        """Until ``GET /healthz`` on the healthz port answers 200; fails with the log tail if the agent exits."""
        async with httpx.AsyncClient(timeout=5.0) as client:

            async def healthy() -> bool:
                if self.process is None or self.process.poll() is not None:
                    code = None if self.process is None else self.process.returncode
                    raise AssertionError(f"maestro agent exited with code {code} before /healthz\n{self.tail()}")
                try:
                    return (await client.get(self.healthz_url)).status_code == 200
                except httpx.TransportError:
                    return False

            try:
                await eventually(healthy, timeout=timeout, interval=0.2)
            except TimeoutError:
                raise AssertionError(
                    f"maestro agent: {self.healthz_url} not 200 within {timeout:.0f}s\n{self.tail()}"
                ) from None
