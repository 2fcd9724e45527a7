"""The hub's settings: every flag, alias, environment variable, default and help text that operators, the Helm
chart and the README pass survives the nesting per area; nested settings reach REST workers whole; bad values are
refused."""

from __future__ import annotations

import argparse
import contextlib
import io
from typing import Any

import pytest

from protocol.backoff import Backoff
from server import cli
from server.settings import (
    TITLES,
    DispatchSettings,
    Settings,
    add_arguments,
    env_name,
    flag_fields,
    flag_name,
    from_sources,
)

# (flag and aliases, environment variable, default, help) of every setting before the settings were nested per area.
BEFORE_NESTING: list[tuple[tuple[str, ...], str, Any, str]] = [
    (("--db-url",), "MAESTRO_DB_URL", None, "PostgreSQL URL; empty runs an embedded PostgreSQL in --data-dir"),
    (("--db-max-open-connections",), "MAESTRO_DB_MAX_OPEN_CONNECTIONS", 50, "maximum connections in the database pool"),
    (("--data-dir",), "MAESTRO_DATA_DIR", None, "where embedded services keep data (default: the user data directory)"),
    (
        ("--auto-migrate",),
        "MAESTRO_AUTO_MIGRATE",
        False,
        "apply migrations at start (always on with the embedded database)",
    ),
    (("--server-hostname",), "MAESTRO_SERVER_HOSTNAME", "127.0.0.1", "address every listener binds to"),
    (("--http-server-bindport",), "MAESTRO_HTTP_SERVER_BINDPORT", 8000, "REST API port"),
    (
        ("--health-check-server-bindport",),
        "MAESTRO_HEALTH_CHECK_SERVER_BINDPORT",
        8083,
        "health check port (/healthcheck, /livez)",
    ),
    (("--metrics-server-bindport",), "MAESTRO_METRICS_SERVER_BINDPORT", 8080, "Prometheus metrics port (/metrics)"),
    (
        ("--http-max-body-bytes",),
        "MAESTRO_HTTP_MAX_BODY_BYTES",
        4194304,
        "largest accepted REST request body, in bytes",
    ),
    (
        ("--http-workers",),
        "MAESTRO_HTTP_WORKERS",
        1,
        "processes serving the REST port (they share its socket; the first process keeps dispatch, gRPC, health and "
        "metrics): one per core beyond the first that PostgreSQL does not need",
    ),
    (
        ("--http-read-timeout",),
        "MAESTRO_HTTP_READ_TIMEOUT",
        5.0,
        "seconds an HTTP client has to send a request's headers, and a REST client again its body (then 408)",
    ),
    (
        ("--disable-auth",),
        "MAESTRO_DISABLE_AUTH",
        False,
        "turn authentication off on REST and gRPC (development only; logs a warning)",
    ),
    (("--jwk-cert-file",), "MAESTRO_JWK_CERT_FILE", None, "JWKS file with the keys that sign accepted tokens"),
    (("--jwk-cert-url",), "MAESTRO_JWK_CERT_URL", None, "JWKS URL with the keys that sign accepted tokens"),
    (("--jwt-issuer",), "MAESTRO_JWT_ISSUER", None, "required 'iss' claim, if set"),
    (("--jwt-audience",), "MAESTRO_JWT_AUDIENCE", None, "required 'aud' claim, if set"),
    (("--source-id",), "MAESTRO_SOURCE_ID", "maestro", "CloudEvents source id of this hub"),
    (("--client-id",), "MAESTRO_CLIENT_ID", "maestro", "MQTT client id and server instance id (unique per replica)"),
    (
        ("--mqtt-config-file", "--message-broker-config-file"),
        "MAESTRO_MQTT_CONFIG_FILE",
        None,
        "MQTT broker config file (YAML); empty runs an embedded broker",
    ),
    (
        ("--embedded-mqtt-port",),
        "MAESTRO_EMBEDDED_MQTT_PORT",
        1883,
        "port of the embedded MQTT broker (used when no --mqtt-config-file)",
    ),
    (("--subscription-type",), "MAESTRO_SUBSCRIPTION_TYPE", "shared", "how replicas share agent events"),
    (
        ("--mqtt-max-packet-bytes",),
        "MAESTRO_MQTT_MAX_PACKET_BYTES",
        524288,
        "largest MQTT message handled; resync payloads are batched below it (Azure Event Grid: 512 KiB)",
    ),
    (("--enable-grpc-server",), "MAESTRO_ENABLE_GRPC_SERVER", True, "serve the gRPC CloudEventService for sources"),
    (("--grpc-server-bindport",), "MAESTRO_GRPC_SERVER_BINDPORT", 8090, "gRPC CloudEventService port"),
    (("--grpc-tls-cert-file",), "MAESTRO_GRPC_TLS_CERT_FILE", None, "gRPC server certificate (enables TLS)"),
    (("--grpc-tls-key-file",), "MAESTRO_GRPC_TLS_KEY_FILE", None, "gRPC server key"),
    (
        ("--grpc-client-ca-file",),
        "MAESTRO_GRPC_CLIENT_CA_FILE",
        None,
        "CA for gRPC client certificates (enables mTLS; a certificate authenticates as its CN)",
    ),
    (
        ("--grpc-authorizer-config",),
        "MAESTRO_GRPC_AUTHORIZER_CONFIG",
        None,
        "YAML mapping of subject (JWT sub or certificate CN) to the source ids it may publish and subscribe for ('*': "
        "any); without it a subject may act only for the source id equal to its name",
    ),
    (("--heartbeat-interval",), "MAESTRO_HEARTBEAT_INTERVAL", 15.0, "seconds between server instance heartbeats"),
    (
        ("--undelivered-resource-threshold",),
        "MAESTRO_UNDELIVERED_RESOURCE_THRESHOLD",
        600.0,
        "seconds without status before a spec is re-published",
    ),
    (
        ("--stale-delete-event-threshold",),
        "MAESTRO_STALE_DELETE_EVENT_THRESHOLD",
        3600.0,
        "seconds before an unacknowledged delete is retired",
    ),
    (
        ("--dispatch-poll-interval",),
        "MAESTRO_DISPATCH_POLL_INTERVAL",
        5.0,
        "seconds between dispatcher sweeps when no NOTIFY arrives",
    ),
    (
        ("--dispatch-coalesce",),
        "MAESTRO_DISPATCH_COALESCE",
        0.02,
        "least seconds between dispatcher sweeps: writes within it are published together (0: a sweep per NOTIFY)",
    ),
    (
        ("--dispatch-concurrency",),
        "MAESTRO_DISPATCH_CONCURRENCY",
        4,
        "consumers the dispatcher publishes to at the same time",
    ),
    (
        ("--delete-republish-interval",),
        "MAESTRO_DELETE_REPUBLISH_INTERVAL",
        60.0,
        "seconds between re-publishes of an unconfirmed delete",
    ),
    (
        ("--maintenance-interval",),
        "MAESTRO_MAINTENANCE_INTERVAL",
        120.0,
        "seconds between repair rounds (undelivered, deletes, retention)",
    ),
    (("--status-event-retention",), "MAESTRO_STATUS_EVENT_RETENTION", 604800.0, "seconds the event logs keep history"),
    (
        ("--event-versions-kept",),
        "MAESTRO_EVENT_VERSIONS_KEPT",
        0,
        "spec versions of each resource the event log keeps, however recent (0: all within the retention); the latest "
        "version of every resource is always kept",
    ),
    (("--log-level",), "MAESTRO_LOG_LEVEL", "info", "debug, info, warning or error"),
    (("--log-format",), "MAESTRO_LOG_FORMAT", "text", "log line format"),
    (
        ("--log-summary-interval",),
        "MAESTRO_LOG_SUMMARY_INTERVAL",
        60.0,
        "seconds between INFO lines counting published specs and stored statuses (none when idle; 0: off)",
    ),
]


def test_every_flag_env_default_and_help_of_the_flat_settings_is_kept() -> None:
    now = [
        ((flag_name(f), *f.metadata["aliases"]), env_name(f), f.default, f.metadata["help"]) for _, f in flag_fields()
    ]
    assert [entry for entry in BEFORE_NESTING if entry not in now] == []
    assert [entry[:3] for entry in now if entry not in BEFORE_NESTING] == [
        (("--mqtt-reconnect",), "MAESTRO_MQTT_RECONNECT", Backoff(min=1.0, max=60.0))
    ]


def test_a_flag_and_an_environment_variable_set_the_field_of_their_area() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--dispatch-concurrency", "7", "--message-broker-config-file", "/etc/mqtt.yaml"])
    environ = {
        "MAESTRO_DB_URL": "postgresql://db/maestro",
        "MAESTRO_DISPATCH_CONCURRENCY": "9",
        "MAESTRO_AUTO_MIGRATE": "yes",
    }
    settings = from_sources(args, environ)
    assert settings.dispatch.dispatch_concurrency == 7  # the flag wins over the environment
    assert settings.transport.mqtt_config_file == "/etc/mqtt.yaml"
    assert settings.database.db_url == "postgresql://db/maestro"
    assert settings.database.auto_migrate is True
    assert from_sources(None, {}) == Settings()


def test_a_bad_environment_value_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="MAESTRO_HTTP_WORKERS='many'"):
        from_sources(None, {"MAESTRO_HTTP_WORKERS": "many"})


@pytest.mark.parametrize(
    ("flag", "value", "why"),
    [
        ("--dispatch-poll-interval", "soon", "invalid float value"),
        ("--mqtt-reconnect", "5", "expected MIN,MAX in seconds"),
        ("--mqtt-reconnect", "60,1", "backoff maximum 1.0 is below its minimum 60.0"),
        ("--mqtt-reconnect", "0,1", "backoff minimum must be positive"),
    ],
)
def test_a_bad_flag_value_exits_2_naming_the_flag(flag: str, value: str, why: str) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
        cli.main(["server", flag, value])
    assert exited.value.code == 2
    assert f"argument {flag}: {why}" in err.getvalue()


def test_a_backoff_flag_and_its_environment_twin_take_min_comma_max() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flagged = from_sources(parser.parse_args(["--mqtt-reconnect", "0.5,10"]), {})
    assert flagged.transport.mqtt_reconnect == Backoff(min=0.5, max=10.0)
    assert from_sources(None, {"MAESTRO_MQTT_RECONNECT": "2,30"}).transport.mqtt_reconnect == Backoff(min=2, max=30)
    with pytest.raises(ValueError, match="MAESTRO_MQTT_RECONNECT='2'"):
        from_sources(None, {"MAESTRO_MQTT_RECONNECT": "2"})


def test_server_help_groups_the_flags_per_area() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        cli.main(["server", "--help"])
    text = out.getvalue()
    positions = [text.index(f"\n{title}:\n") for title in TITLES.values()]
    assert positions == sorted(positions)
    assert positions[0] < text.index("\n  --db-url") < positions[1]
    assert positions[5] < text.index("\n  --dispatch-coalesce") < positions[6]


def test_settings_of_routes_flat_names_to_their_area_and_refuses_unknown_ones() -> None:
    settings = Settings.of(source_id="s", publish_backoff=Backoff(min=0.1, max=1.0), maintenance_page_size=5)
    assert settings.transport.source_id == "s"
    assert settings.dispatch == DispatchSettings(publish_backoff=Backoff(min=0.1, max=1.0))
    assert settings.maintenance.maintenance_page_size == 5
    assert settings.replace(source_id="t").transport.source_id == "t"
    with pytest.raises(TypeError, match="no setting named 'poll_interval'"):
        Settings.of(poll_interval=1.0)


def test_settings_reach_rest_workers_whole() -> None:
    settings = Settings.of(db_url="postgresql://db/m", http_workers=3, ingest_retry=Backoff(min=0.2, max=2.0))
    assert Settings.from_json(settings.to_json()) == settings
