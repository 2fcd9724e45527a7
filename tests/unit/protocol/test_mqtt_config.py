"""Loading the MQTT config file: upstream's keys, our additions, errors that name the field."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from protocol import mqtt_config
from protocol.errors import ConfigError

TOPICS = """
topics:
  sourceEvents: sources/maestro/consumers/+/sourceevents
  agentEvents: $share/statussubscribers/sources/maestro/consumers/+/agentevents
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mqtt.yaml"
    path.write_text(text)
    return path


def test_upstream_file(tmp_path: Path) -> None:
    config = mqtt_config.load(
        _write(tmp_path, "brokerHost: mqtt.example:1884\nusername: u\npassword: s3cret\n" + TOPICS)
    )
    assert (config.host, config.port) == ("mqtt.example", 1884)
    assert config.username == "u"
    assert config.password == "s3cret"
    assert "password" not in repr(config)
    assert config.topics.agent_events.startswith("$share/statussubscribers/")
    assert config.topics.source_broadcast is None
    assert (config.keep_alive, config.pub_qos, config.sub_qos, config.dial_timeout) == (60, 1, 1, 60.0)
    assert (config.protocol_version, config.max_inflight, config.session_expiry) == (5, 100, 3600)
    assert config.binary_mode
    assert config.ssl_context() is None


def test_our_additions_and_durations(tmp_path: Path) -> None:
    text = "brokerHost: '[::1]'\nprotocolVersion: 3\nmaxInflight: 10\nsessionExpiry: 0\ndialTimeout: 500ms\n"
    config = mqtt_config.load(_write(tmp_path, text + TOPICS))
    assert (config.host, config.port) == ("::1", 1883)
    assert not config.binary_mode
    assert config.max_inflight == 10
    assert config.session_expiry == 0
    assert config.dial_timeout == 0.5


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("brokerHost: h:1883\n", "topics"),
        ("topics: {sourceEvents: sources/maestro/consumers/+/sourceevents}\nbrokerHost: h:1\n", "topics.agentEvents"),
        ("brokerHost: h:99999\n" + TOPICS, "brokerHost"),
        (TOPICS, "brokerHost"),
        ("brokerHost: h:1\npubQoS: 3\n" + TOPICS, "pubQoS"),
        ("brokerHost: h:1\nkeepAlive: soon\n" + TOPICS, "keepAlive"),
        ("brokerHost: h:1\nprotocolVersion: 4.5\n" + TOPICS, "protocolVersion"),
        ("brokerHost: h:1\nprotocolVersion: 6\n" + TOPICS, "protocolVersion"),
        ("brokerHost: h:1\ndialTimeout: forever\n" + TOPICS, "dialTimeout"),
        ("brokerHost: h:1\ncaFile: missing.pem\n" + TOPICS, "caFile"),
        ("brokerHost: h:1\nbrokerhost: typo\n" + TOPICS, "brokerhost"),
        ("brokerHost: h:1\ntopics: {sourceEvents: 'bad topic', agentEvents: x}\n", "topics.sourceEvents"),
        ("- a list\n", "file"),
        ("brokerHost: [unclosed\n", "file"),
    ],
)
def test_errors_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        mqtt_config.load(_write(tmp_path, text))
    assert info.value.field == field


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        mqtt_config.load(tmp_path / "nope.yaml")


def test_tls_paths_are_file_relative_and_build_a_context(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test",
            "-keyout",
            str(certs / "client.key"),
            "-out",
            str(certs / "client.crt"),
        ],
        check=True,
        capture_output=True,
    )
    text = (
        "brokerHost: broker\ncaFile: certs/client.crt\nclientCertFile: certs/client.crt\n"
        "clientKeyFile: certs/client.key\n" + TOPICS
    )
    config = mqtt_config.load(_write(tmp_path, text))
    assert config.port == 8883
    assert config.ca_file == certs / "client.crt"
    context = config.ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_cert_without_key(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    with pytest.raises(ConfigError) as info:
        mqtt_config.load(_write(tmp_path, "brokerHost: b:1\nclientCertFile: c.pem\n" + TOPICS))
    assert info.value.field == "clientKeyFile"
