"""Fixtures for the e2e suite: a real Kubernetes control plane (or the user's own cluster), kubectl and helm.

- ``kubeconfig`` (session): path to an admin kubeconfig. If ``MAESTRO_E2E_KUBECONFIG`` is set, that cluster
  (kind, k3s, ...) is used as is; otherwise the binaries are built (cached per machine by
  ``build-control-plane.sh``) and a :class:`tests.e2e.cluster.ControlPlane` is started for the session.
- ``kubectl_bin``/``helm_bin`` (session): paths to real kubectl and helm binaries (from PyPI, cached).
- ``kubectl`` (function): run kubectl against the cluster; ``namespace`` (function): a fresh namespace.
- ``k8s_api`` (function): a ``kubernetes_asyncio`` ApiClient loaded explicitly from the kubeconfig file.

The cold build can take tens of minutes, so it runs once after collection (before any test and outside
per-test timeouts) when e2e tests are selected. This file must not import server/ or agent/ code.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from tests.e2e.cluster import Binaries, ControlPlane, ControlPlaneError, build_binaries

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
