"""Hub settings: one frozen dataclass, every field a documented command-line flag with an environment twin.

Flag names follow upstream Maestro where a flag exists there (``--db-url`` is ours: upstream reads credentials
from files). Precedence: command line, then ``MAESTRO_<FIELD>`` in the environment, then the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_type_hints

ENV_PREFIX = "MAESTRO_"


def opt(default: Any, help: str, *, flag: str | None = None, aliases: tuple[str, ...] = ()) -> Any:
    return field(default=default, metadata={"help": help, "flag": flag, "aliases": aliases})


@dataclass(frozen=True)
class Settings:
    # Database
    db_url: str | None = opt(None, "PostgreSQL URL; empty runs an embedded PostgreSQL in --data-dir")
    db_max_open_connections: int = opt(50, "maximum connections in the database pool")
    data_dir: str | None = opt(None, "where embedded services keep data (default: the user data directory)")
    auto_migrate: bool = opt(False, "apply migrations at start (always on with the embedded database)")

    # HTTP listeners
    server_hostname: str = opt("127.0.0.1", "address every listener binds to")
    http_server_bindport: int = opt(8000, "REST API port")
    health_check_server_bindport: int = opt(8083, "health check port (/healthcheck, /livez)")
    metrics_server_bindport: int = opt(8080, "Prometheus metrics port (/metrics)")
    http_max_body_bytes: int = opt(4 * 1024 * 1024, "largest accepted REST request body, in bytes")
    http_workers: int = opt(
        1,
        "processes serving the REST port (they share its socket; the first process keeps dispatch, gRPC, health and"
        " metrics): one per core beyond the first that PostgreSQL does not need",
    )
    http_read_timeout: float = opt(
        5.0, "seconds an HTTP client has to send a request's headers, and a REST client again its body (then 408)"
    )

    # Authentication (bearer JWT, checked against a JWKS; gRPC also takes client certificates)
    disable_auth: bool = opt(False, "turn authentication off on REST and gRPC (development only; logs a warning)")
    jwk_cert_file: str | None = opt(None, "JWKS file with the keys that sign accepted tokens")
    jwk_cert_url: str | None = opt(None, "JWKS URL with the keys that sign accepted tokens")
    jwt_issuer: str | None = opt(None, "required 'iss' claim, if set")
    jwt_audience: str | None = opt(None, "required 'aud' claim, if set")

    # Transport
    source_id: str = opt("maestro", "CloudEvents source id of this hub")
    client_id: str = opt("maestro", "MQTT client id and server instance id (unique per replica)")
    mqtt_config_file: str | None = opt(
        None, "MQTT broker config file (YAML); empty runs an embedded broker", aliases=("--message-broker-config-file",)
    )
    embedded_mqtt_port: int = opt(1883, "port of the embedded MQTT broker (used when no --mqtt-config-file)")
    subscription_type: Literal["shared", "broadcast"] = opt("shared", "how replicas share agent events")
    mqtt_max_packet_bytes: int = opt(
        512 * 1024, "largest MQTT message handled; resync payloads are batched below it (Azure Event Grid: 512 KiB)"
    )
    enable_grpc_server: bool = opt(True, "serve the gRPC CloudEventService for sources")
    grpc_server_bindport: int = opt(8090, "gRPC CloudEventService port")
    grpc_tls_cert_file: str | None = opt(None, "gRPC server certificate (enables TLS)")
    grpc_tls_key_file: str | None = opt(None, "gRPC server key")
    grpc_client_ca_file: str | None = opt(
        None, "CA for gRPC client certificates (enables mTLS; a certificate authenticates as its CN)"
    )
    grpc_authorizer_config: str | None = opt(
        None,
        "YAML mapping of subject (JWT sub or certificate CN) to the source ids it may publish and subscribe for"
        " ('*': any); without it a subject may act only for the source id equal to its name",
    )
    heartbeat_interval: float = opt(15.0, "seconds between server instance heartbeats")
    undelivered_resource_threshold: float = opt(600.0, "seconds without status before a spec is re-published")
    stale_delete_event_threshold: float = opt(3600.0, "seconds before an unacknowledged delete is retired")
    dispatch_poll_interval: float = opt(5.0, "seconds between dispatcher sweeps when no NOTIFY arrives")
    dispatch_coalesce: float = opt(
        0.02,
        "least seconds between dispatcher sweeps: writes within it are published together (0: a sweep per NOTIFY)",
    )
    dispatch_concurrency: int = opt(4, "consumers the dispatcher publishes to at the same time")
    delete_republish_interval: float = opt(60.0, "seconds between re-publishes of an unconfirmed delete")
    maintenance_interval: float = opt(120.0, "seconds between repair rounds (undelivered, deletes, retention)")
    status_event_retention: float = opt(7 * 24 * 3600.0, "seconds the event logs keep history")
    event_versions_kept: int = opt(
        0,
        "spec versions of each resource the event log keeps, however recent (0: all within the retention);"
        " the latest version of every resource is always kept",
    )

    # Logging
    log_level: str = opt("info", "debug, info, warning or error")
    log_format: Literal["text", "json"] = opt("text", "log line format")
    log_summary_interval: float = opt(
        60.0, "seconds between INFO lines counting published specs and stored statuses (none when idle; 0: off)"
    )

    @property
    def auth_enabled(self) -> bool:
        """Bearer tokens are required (REST and gRPC)."""
        return not self.disable_auth and bool(self.jwk_cert_file or self.jwk_cert_url)

    @property
    def grpc_auth_enabled(self) -> bool:
        """gRPC callers must authenticate (a bearer token, or a client certificate) and are authorized per source."""
        return self.auth_enabled or (not self.disable_auth and bool(self.grpc_client_ca_file))


def flag_name(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("flag") or "--" + f.name.replace("_", "-"))


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def add_arguments(parser: argparse.ArgumentParser, *, only: set[str] | None = None) -> None:
    """Register one flag per settings field (or per field in ``only``)."""
    hints = get_type_hints(Settings)
    for f in dataclasses.fields(Settings):
        if only is not None and f.name not in only:
            continue
        names = [flag_name(f), *f.metadata.get("aliases", ())]
        env = ENV_PREFIX + f.name.upper()
        helptext = f"{f.metadata['help']} (env {env}; default {f.default!r})"
        kind = hints[f.name]
        if kind is bool:
            parser.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=helptext)
            continue
        choices = get_args(kind) if getattr(kind, "__origin__", None) is Literal else None
        conv: Any = int if kind is int else float if kind is float else str
        parser.add_argument(*names, dest=f.name, type=conv, choices=choices, default=None, help=helptext)


def from_sources(args: argparse.Namespace | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Build settings from parsed flags, then the environment, then defaults. Bad values raise ValueError."""
    environ = dict(os.environ) if environ is None else environ
    hints = get_type_hints(Settings)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        given = getattr(args, f.name, None) if args is not None else None
        if given is not None:
            values[f.name] = given
            continue
        raw = environ.get(ENV_PREFIX + f.name.upper())
        if raw is None:
            continue
        kind = hints[f.name]
        try:
            if kind is bool:
                values[f.name] = _parse_bool(raw)
            elif kind is int:
                values[f.name] = int(raw)
            elif kind is float:
                values[f.name] = float(raw)
            else:
                choices = get_args(kind) if getattr(kind, "__origin__", None) is Literal else None
                if choices and raw not in choices:
                    raise ValueError(f"expected one of {', '.join(map(str, choices))}")
                values[f.name] = raw or None if "None" in str(kind) else raw
        except ValueError as exc:
            raise ValueError(f"{ENV_PREFIX + f.name.upper()}={raw!r}: {exc}") from None
    return Settings(**values)
