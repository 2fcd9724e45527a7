"""The README's run command: ``maestro server`` with no database URL runs an embedded PostgreSQL whose data
survives a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures.postgres import free_port


def _start(data_dir: Path, ports: dict[str, int], log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "server.cli",
        "server",
        "--data-dir",
        str(data_dir),
        "--http-server-bindport",
        str(ports["http"]),
        "--health-check-server-bindport",
        str(ports["health"]),
        "--metrics-server-bindport",
        str(ports["metrics"]),
        "--no-enable-grpc-server",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAESTRO_")}
    env["MAESTRO_EMBEDDED_MQTT_PORT"] = str(ports["mqtt"])
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _wait_ready(ports: dict[str, int], proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"maestro server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{ports['health']}/healthcheck", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"maestro server did not become ready:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_embedded_postgres_keeps_data_across_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = {"http": free_port(), "health": free_port(), "metrics": free_port(), "mqtt": free_port()}
    log = tmp_path / "server.log"
    api = f"http://127.0.0.1:{ports['http']}/api/maestro/v1"

    proc = _start(data_dir, ports, log)
    try:
        _wait_ready(ports, proc, log)
        created = httpx.post(f"{api}/consumers", json={"name": "cluster1"}, timeout=10)
        assert created.status_code == 201, created.text
    finally:
        _stop(proc)
    assert proc.returncode == 0, log.read_text()[-3000:]

    proc = _start(data_dir, ports, log)
    try:
        _wait_ready(ports, proc, log)
        listed = httpx.get(f"{api}/consumers", timeout=10).json()
        assert [c["name"] for c in listed["items"]] == ["cluster1"]
        assert listed["items"][0]["id"] == created.json()["id"]
    finally:
        _stop(proc)
