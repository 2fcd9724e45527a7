"""The ``maestro`` command fails with one clear line (and a non-zero exit), never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.fixtures.postgres import free_port


def maestro(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAESTRO_")}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env", "code", "says"),
    [
        (("server", "--db-url", "postgresql://u:secret@127.0.0.1:{port}/x"), {}, 1, "cannot connect to the database"),
        (("migration", "--db-url", "postgresql://u:secret@127.0.0.1:{port}/x"), {}, 1, "failed on"),
        (("server",), {"MAESTRO_HTTP_SERVER_BINDPORT": "abc"}, 2, "MAESTRO_HTTP_SERVER_BINDPORT='abc'"),
        (("server", "--db-url", "mysql://x/y"), {}, 1, "unsupported database URL"),
        (
            ("server", "--auto-migrate", "--db-url", "postgresql://u:secret@127.0.0.1:{port}/x"),
            {},
            1,
            "cannot connect to the database",
        ),
        (("agent",), {}, 2, "--consumer-name is required"),
        (("server", "--mqtt-config-file", "/nonexistent/mqtt.yaml"), {}, 1, "--mqtt-config-file /nonexistent"),
        (
            ("server", "--http-server-bindport", "{port}", "--health-check-server-bindport", "{port}"),
            {},
            1,
            "--health-check-server-bindport {port} is also --http-server-bindport: each listener needs a port of its",
        ),
    ],
)
def test_clear_errors(args: tuple[str, ...], env: dict[str, str], code: int, says: str) -> None:
    port = str(free_port())  # nothing listens there
    result = maestro(*(a.replace("{port}", port) for a in args), env=env)
    assert result.returncode == code, result.stderr
    assert says.replace("{port}", port) in result.stderr
    assert "Traceback" not in result.stderr
    assert "secret" not in result.stderr  # passwords are redacted


def test_busy_embedded_broker_port(db_url: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = maestro(
            "server",
            "--db-url",
            db_url,
            "--embedded-mqtt-port",
            str(port),
            "--http-server-bindport",
            str(free_port()),
            "--health-check-server-bindport",
            str(free_port()),
            "--metrics-server-bindport",
            str(free_port()),
            "--grpc-server-bindport",
            str(free_port()),
        )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "cannot start the embedded MQTT broker" in result.stderr
    assert "Traceback" not in result.stderr
