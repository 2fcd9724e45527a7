"""What an operator reads on stderr: ``maestro server`` run as a subprocess, its log lines asserted one by one.

A first start on the embedded defaults (fresh home, no ``XDG_RUNTIME_DIR``) shows neither initdb's output nor a
platformdirs warning; uvicorn says once per listener, by name, where it serves; every REST call is one access line
with its route template and status, the probes none (they are DEBUG); every line names the replica.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures.postgres import free_port

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+) (\S+): (.*)$")
NGINX = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "nginx", "namespace": "default"},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "nginx"}}},
}


def _ports() -> dict[str, int]:
    return {name: free_port() for name in ("http", "health", "metrics", "grpc", "mqtt")}


def _env(home: Path) -> dict[str, str]:
    drop = ("MAESTRO_", "XDG_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["HOME"] = str(home)
    return env


def _start(ports: dict[str, int], home: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "server.cli",
        "server",
        "--http-server-bindport",
        str(ports["http"]),
        "--health-check-server-bindport",
        str(ports["health"]),
        "--metrics-server-bindport",
        str(ports["metrics"]),
        "--grpc-server-bindport",
        str(ports["grpc"]),
        "--embedded-mqtt-port",
        str(ports["mqtt"]),
        *args,
    ]
    with log.open("ab") as err:
        return subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=err, env=_env(home), cwd=home, start_new_session=True
        )


def _wait_ready(ports: dict[str, int], proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
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


def _wait_for(log: Path, pattern: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if re.search(pattern, log.read_text(), re.MULTILINE):
            return
        time.sleep(0.3)
    pytest.fail(f"no line matching {pattern!r}:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def _parsed(log: Path) -> list[tuple[str, str, str, str]]:
    """Every stderr line as (level, replica, logger, message); a line of another shape fails the test."""
    out = []
    for line in log.read_text().splitlines():
        match = LINE.match(line)
        assert match, f"not a log line: {line!r}"
        level, replica, logger, message = match.groups()
        out.append((level, replica, logger, message))
    return out


def test_first_start_on_embedded_defaults_reads_as_one_line_per_event(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    ports, log = _ports(), tmp_path / "stderr.log"
    rest = f"http://127.0.0.1:{ports['http']}/api/maestro/v1"
    proc = _start(ports, home, log, "--client-id", "hub-a", "--log-summary-interval", "1")
    try:
        _wait_ready(ports, proc, log)
        calls = [
            ("GET", "/api/maestro/v1/consumers", 200, httpx.get(f"{rest}/consumers")),
            ("POST", "/api/maestro/v1/consumers", 201, httpx.post(f"{rest}/consumers", json={"name": "cluster1"})),
        ]
        consumer = calls[-1][-1].json()["id"]
        calls += [
            ("GET", "/api/maestro/v1/consumers/{id}", 200, httpx.get(f"{rest}/consumers/{consumer}")),
            ("GET", "/api/maestro/v1/resource-bundles/{id}", 404, httpx.get(f"{rest}/resource-bundles/nope")),
            (
                "POST",
                "/api/maestro/v1/resources",
                201,
                httpx.post(f"{rest}/resources", json={"consumer_name": "cluster1", "manifest": NGINX}),
            ),
        ]
        for _, _, status, response in calls:
            assert response.status_code == status, response.text
        for port, path in ((ports["health"], "/livez"), (ports["metrics"], "/metrics")):
            assert httpx.get(f"http://127.0.0.1:{port}{path}").status_code == 200
        # NB: the hub publishes the new resource to the embedded broker; the summary counts it once.
        _wait_for(
            log,
            r"server\.dispatch\.summary: last 1s: published 1 \(create_request 1\), statuses 0, dropped 0, errors 0$",
        )
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()[-3000:]

    text = log.read_text()
    chatter_words = ("initdb", "pixeltable", "RuntimeDirWarning", "XDG_RUNTIME_DIR", "yoyo", "Connected to database")
    for chatter in (*chatter_words, "gmqtt", "MqttPackageHandler"):
        assert chatter not in text, f"{chatter!r} in the first start's output:\n{text}"
    lines = _parsed(log)
    assert {replica for _, replica, _, _ in lines} == {"hub-a"}
    assert (
        "INFO",
        "hub-a",
        "server.dispatch.instances",
        "replicas now hub-a: this one owns 0 consumers, gained 0",
    ) in lines

    uvicorn = [m for _, _, _, m in lines if "uvicorn" in m]
    assert uvicorn == [
        f"REST listening on http://127.0.0.1:{ports['http']} (uvicorn)",
        f"health listening on http://127.0.0.1:{ports['health']} (uvicorn)",
        f"metrics listening on http://127.0.0.1:{ports['metrics']} (uvicorn)",
    ]
    assert not [name for _, _, name, _ in lines if name.startswith("uvicorn")]

    access = [m for _, _, name, m in lines if name == "server.http.access"]
    assert [a.split(" ")[:3] for a in access] == [[method, path, str(status)] for method, path, status, _ in calls]
    for line, (_, _, _, response) in zip(access, calls, strict=True):
        assert re.fullmatch(r"\S+ \S+ \d{3} \d+\.\dms op=(\S+)", line)
        assert line.endswith(f"op={response.headers['X-Operation-ID']}")


def test_debug_shows_probes_and_each_listeners_lifecycle(tmp_path: Path, db_url: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    ports, log = _ports(), tmp_path / "stderr.log"
    proc = _start(ports, home, log, "--db-url", db_url, "--client-id", "hub-b", "--log-level", "debug")
    try:
        _wait_ready(ports, proc, log)
        assert httpx.get(f"http://127.0.0.1:{ports['health']}/livez").status_code == 200
        _wait_for(log, r" DEBUG hub-b server\.http\.access: GET /livez 200 ")
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert re.search(r" DEBUG hub-b server\.http\.access: GET /healthcheck (200|503) ", text)
    assert re.search(r" DEBUG hub-b protocol\.mqtt\.gmqtt: \[MqttPackageHandler\] ", text)  # packets: DEBUG only
    for listener in ("REST", "health", "metrics"):
        assert f" DEBUG hub-b uvicorn.{listener}: Application startup complete." in text
        assert f" DEBUG hub-b uvicorn.{listener}: Application shutdown complete." in text


def test_a_failing_embedded_postgres_shows_what_it_said(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "postgres").mkdir(parents=True)
    (data / "postgres" / "not-a-database").write_text("left here by someone else\n")
    env = _env(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "migration", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"starting PostgreSQL in {data / 'postgres'} failed; the embedded PostgreSQL said:" in result.stderr
    assert "initdb" in result.stderr
    assert "is not empty" in result.stderr
