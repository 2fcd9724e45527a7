"""Fixtures for the e2e suite: a real Kubernetes control plane (or the user's own cluster), kubectl and helm.

- ``kubeconfig`` (session): path to an admin kubeconfig. If ``MAESTRO_E2E_KUBECONFIG`` is set, that cluster
  (kind, k3s, ...) is used as is; otherwise the binaries are built (cached per machine by
  ``build-control-plane.sh``) and a :class:`tests.e2e.cluster.ControlPlane` is started for the session.
- ``kubectl_bin``/``helm_bin`` (session): paths to real kubectl and helm binaries (from PyPI, cached).
- ``kubectl`` (function): run kubectl against the cluster; ``namespace`` (function): a fresh namespace.
- ``k8s_api`` (function): a ``kubernetes_asyncio`` ApiClient loaded explicitly from the kubeconfig file.
- ``e2e_hub`` (function): a real ``maestro server`` process (gRPC on) against ``db_url`` and the session's
  ``mosquitto``, with a source and a consumer name unique to the test (:class:`tests.e2e.hub_support.E2EHub`).
- ``rest`` (function): an open ``httpx.AsyncClient`` on the ``e2e_hub`` REST API (``E2EHub.rest()`` makes more).
- ``e2e_agent`` (function): ``await e2e_agent(*args, **flags)`` starts a real ``maestro agent`` process
  (:class:`tests.e2e.hub_support.AgentProcess`) for the hub's consumer in a fresh agent namespace, waits for
  ``/healthz`` and, at teardown, stops it with SIGTERM and requires exit code 0.

The cold build can take tens of minutes, so it runs once after collection (before any test and outside
per-test timeouts) when e2e tests are selected. This file must not import server/ or agent/ code; the hub and
the agent run as processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Protocol

import httpx
import pytest
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from tests.e2e.cluster import Binaries, ControlPlane, ControlPlaneError, build_binaries
from tests.e2e.hub_support import AgentProcess, E2EHub, HubProcess, free_port, write_mqtt_config
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames

E2E_DIR = Path(__file__).resolve().parent
KUBECONFIG_ENV = "MAESTRO_E2E_KUBECONFIG"

_binaries: Binaries | None = None
_build_error: str | None = None


def _get_binaries() -> Binaries:
    """Build (or find cached) binaries once per session; only helm+kubectl for a user-provided cluster.

    A failed build fails every e2e test with the build's output (never a silent skip or a fake cluster).
    """
    global _binaries, _build_error
    if _build_error is not None:
        pytest.fail(_build_error, pytrace=False)
    if _binaries is None:
        try:
            _binaries = build_binaries(tools_only=bool(os.environ.get(KUBECONFIG_ENV)))
        except ControlPlaneError as exc:
            _build_error = f"building the e2e control plane failed: {exc}"
            pytest.fail(_build_error, pytrace=False)
    return _binaries


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: needs a real Kubernetes control plane")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build before the first test runs, so a cold build is not cut short by a per-test timeout."""
    if session.config.option.collectonly:
        return
    if any(E2E_DIR in Path(str(item.path)).parents for item in session.items):
        # A failure is remembered and reported by the fixtures, not as an internal error here.
        with contextlib.suppress(pytest.fail.Exception):
            _get_binaries()


@pytest.fixture(scope="session")
def e2e_binaries() -> Binaries:
    return _get_binaries()


@pytest.fixture(scope="session")
def kubeconfig(e2e_binaries: Binaries) -> Iterator[str]:
    """Path of an admin kubeconfig for a real cluster (ours, or the one MAESTRO_E2E_KUBECONFIG points at)."""
    external = os.environ.get(KUBECONFIG_ENV)
    if external:
        if not Path(external).is_file():
            pytest.fail(f"{KUBECONFIG_ENV}={external} is not a file")
        yield external
        return
    plane = ControlPlane(e2e_binaries.bin_dir, keep_run_dir=bool(os.environ.get("MAESTRO_E2E_KEEP_RUN_DIR")))
    try:
        yield str(plane.start())
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kubectl_bin(e2e_binaries: Binaries) -> str:
    return str(e2e_binaries.kubectl)


@pytest.fixture(scope="session")
def helm_bin(e2e_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Path of helm; HELM_{CACHE,CONFIG,DATA}_HOME point at temporary directories for the session."""
    home = tmp_path_factory.mktemp("helm")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
            path = home / var.lower()
            path.mkdir()
            mp.setenv(var, str(path))
        yield str(e2e_binaries.helm)


KubectlRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def kubectl(kubectl_bin: str, kubeconfig: str) -> KubectlRunner:
    """``kubectl(*args, check=True, input=None)``: run kubectl against the test cluster, return the result."""

    def run(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [kubectl_bin, f"--kubeconfig={kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stderr}{res.stdout}")
        return res

    return run


@pytest.fixture
def namespace(kubectl: KubectlRunner, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"e2e-{base}-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    deadline = time.monotonic() + 30
    while kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode != 0:
        if time.monotonic() > deadline:  # only a convenience for tests that want SA tokens; never fatal
            break
        time.sleep(0.2)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
async def k8s_api(kubeconfig: str) -> AsyncIterator[k8s_client.ApiClient]:
    """A kubernetes_asyncio ApiClient loaded explicitly from the kubeconfig file (not from $KUBECONFIG)."""
    api = await k8s_config.new_client_from_config(config_file=kubeconfig)
    try:
        yield api
    finally:
        await api.close()


# -- the hub and the agent as real processes ----------------------------------------------------------------


@pytest.fixture
async def e2e_hub(
    tmp_path: Path, db_url: str, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> AsyncIterator[E2EHub]:
    """A ready ``maestro server`` (REST, gRPC, dispatch) for one test; stopped with SIGTERM afterwards.

    Teardown requires exit code 0 from a running hub; a hub the test SIGKILLed (``e2e_hub.process.kill()``)
    and did not restart is accepted as is.
    """
    config = write_mqtt_config(
        tmp_path / "hub-mqtt.yaml", host=mosquitto.host, port=mosquitto.port, source=mqtt_names.source
    )
    grpc_port = free_port()
    process = HubProcess(
        db_url=db_url,
        mqtt_config_file=config,
        source=mqtt_names.source,
        client_id=mqtt_names.client_id("hub"),
        log=tmp_path / "hub.log",
        args=("--enable-grpc-server", "--grpc-server-bindport", str(grpc_port)),
    )
    hub = E2EHub(
        process=process,
        grpc_port=grpc_port,
        source=mqtt_names.source,
        consumer=mqtt_names.consumer,
        mqtt_config_file=config,
        broker_host=mosquitto.host,
        broker_port=mosquitto.port,
    )
    process.start()
    try:
        await process.wait_ready()
        yield hub
    finally:
        running = process.process is not None and process.process.poll() is None
        code = process.stop()
        if running and code != 0:
            pytest.fail(f"maestro server exited with {code} at teardown:\n{process.output()[-4000:]}")
        if not running and code not in (0, -signal.SIGKILL):
            pytest.fail(f"maestro server had exited with {code}:\n{process.output()[-4000:]}")


@pytest.fixture
async def rest(e2e_hub: E2EHub) -> AsyncIterator[httpx.AsyncClient]:
    """An open AsyncClient on the ``e2e_hub`` REST API (base URL ``.../api/maestro/v1``)."""
    async with e2e_hub.rest() as client:
        yield client


class StartAgent(Protocol):
    """``await e2e_agent(*extra_args, **flags)``; see the ``e2e_agent`` fixture."""

    def __call__(
        self,
        *extra_args: str,
        consumer: str | None = None,
        namespace: str | None = None,
        wait_healthy: bool = True,
        timeout: float = 60.0,
        check_exit: bool = True,
        **flags: str | int | float | bool,
    ) -> Awaitable[AgentProcess]: ...


def _flag_args(flags: dict[str, str | int | float | bool]) -> list[str]:
    """``foo_bar=1`` → ``--foo-bar 1``; ``foo=True`` → ``--foo``; ``foo=False`` → ``--no-foo``."""
    args: list[str] = []
    for key, value in flags.items():
        name = key.replace("_", "-")
        if value is True:
            args.append(f"--{name}")
        elif value is False:
            args.append(f"--no-{name}")
        else:
            args += [f"--{name}", str(value)]
    return args


@pytest.fixture
async def e2e_agent(
    e2e_hub: E2EHub, kubeconfig: str, kubectl: KubectlRunner, mqtt_names: MQTTNames, tmp_path: Path
) -> AsyncIterator[StartAgent]:
    """Factory: ``agent = await e2e_agent(*extra_args, consumer=None, namespace=None, wait_healthy=True,
    timeout=60, check_exit=True, **flags)`` starts ``maestro agent`` for ``consumer`` (default: the hub's).

    Each call writes the agent's broker config, creates a fresh agent namespace ``maestro-agent-<hex>`` (unless
    ``namespace`` is given) and, with ``wait_healthy``, waits for ``/healthz``. Keyword ``flags`` become CLI flags
    (``foo_bar=1`` → ``--foo-bar 1``, ``True`` → ``--foo-bar``, ``False`` → ``--no-foo-bar``). The consumer is
    not registered in the hub: call ``e2e_hub.create_consumer()`` for that.

    Teardown stops every agent with SIGTERM (SIGKILL after 30 s) and fails, with the log tail, unless each exits
    with 0. Agents the test SIGKILLed (``agent.kill()``) and left dead are accepted; ``check_exit=False`` skips
    the check for an agent that is expected to fail.
    """
    agents: list[tuple[AgentProcess, bool]] = []
    namespaces: list[str] = []

    async def start(
        *extra_args: str,
        consumer: str | None = None,
        namespace: str | None = None,
        wait_healthy: bool = True,
        timeout: float = 60.0,
        check_exit: bool = True,
        **flags: str | int | float | bool,
    ) -> AgentProcess:
        index = len(agents)
        if namespace is None:
            namespace = f"maestro-agent-{uuid.uuid4().hex[:8]}"
            kubectl("create", "namespace", namespace)
            namespaces.append(namespace)
        agent = AgentProcess(
            consumer=consumer or e2e_hub.consumer,
            workload_source_config=e2e_hub.agent_mqtt_config(tmp_path / f"agent-{index}-mqtt.yaml", consumer=consumer),
            kubeconfig=kubeconfig,
            agent_namespace=namespace,
            client_id=mqtt_names.client_id(f"agent{index}"),
            log=tmp_path / f"agent-{index}.log",
            extra_args=[*extra_args, *_flag_args(flags)],
        )
        agents.append((agent, check_exit))
        agent.start()
        if wait_healthy:
            await agent.wait_healthy(timeout)
        return agent

    try:
        yield start
    finally:
        failures: list[str] = []
        for agent, check_exit in agents:
            running = agent.running
            code = agent.stop()
            if not check_exit or (not running and agent.killed):
                continue
            if code != 0:
                when = "at teardown (SIGTERM)" if running else "before teardown"
                failures.append(f"maestro agent {agent.client_id} exited with {code} {when}\n{agent.tail()}")
        for namespace in namespaces:
            kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)
        if failures:
            pytest.fail("\n\n".join(failures), pytrace=False)
