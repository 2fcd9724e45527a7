"""Hub settings, nested per area: each area a small frozen dataclass, each of its flag fields a documented
command-line flag with an environment twin.

Flag names follow upstream Maestro where a flag exists there (``--db-url`` is ours: upstream reads credentials
from files). A flag field's flag is ``--`` and its name with dashes, its environment variable ``MAESTRO_`` and its
name in capitals; field names are unique across the areas, so one name finds a knob in the code, the flags and the
environment. Precedence: command line, then the environment, then the default.

Fields without help text are bounds that only code and tests set (retry backoffs, page and batch sizes): they are
here so that production and tests build every component through the same settings, not through keyword defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_type_hints

from protocol.backoff import Backoff

ENV_PREFIX = "MAESTRO_"


def opt(default: Any, help: str, *, aliases: tuple[str, ...] = ()) -> Any:
    """A field with a flag (and an environment twin)."""
    return field(default=default, metadata={"help": help, "aliases": aliases})


@dataclass(frozen=True)
class DatabaseSettings:
    db_url: str | None = opt(None, "PostgreSQL URL; empty runs an embedded PostgreSQL in --data-dir")
    db_max_open_connections: int = opt(50, "maximum connections in the database pool")
    data_dir: str | None = opt(None, "where embedded services keep data (default: the user data directory)")
    auto_migrate: bool = opt(False, "apply migrations at start (always on with the embedded database)")
    listen_backoff: Backoff = field(default=Backoff(min=0.5, max=30.0))
    """Reconnect delays of a LISTEN connection."""
    listen_ping_interval: float = 10.0
    """Seconds between liveness checks of an idle LISTEN connection."""


@dataclass(frozen=True)
class HTTPSettings:
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


@dataclass(frozen=True)
class AuthSettings:
    disable_auth: bool = opt(False, "turn authentication off on REST and gRPC (development only; logs a warning)")
    jwk_cert_file: str | None = opt(None, "JWKS file with the keys that sign accepted tokens")
    jwk_cert_url: str | None = opt(None, "JWKS URL with the keys that sign accepted tokens")
    jwt_issuer: str | None = opt(None, "required 'iss' claim, if set")
    jwt_audience: str | None = opt(None, "required 'aud' claim, if set")


@dataclass(frozen=True)
class TransportSettings:
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
    heartbeat_interval: float = opt(15.0, "seconds between server instance heartbeats")
    mqtt_reconnect: Backoff = opt(  # noqa: RUF009 - a Backoff is frozen
        Backoff(min=1.0, max=60.0),
        "MIN,MAX seconds between attempts to reach the MQTT broker (doubling from MIN, jittered), first and after a"
        " lost link",
    )


@dataclass(frozen=True)
class GRPCSettings:
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
    grpc_heartbeat_interval: float = 10.0
    """Seconds between heartbeats on an idle gRPC subscription stream."""


@dataclass(frozen=True)
class DispatchSettings:
    dispatch_poll_interval: float = opt(5.0, "seconds between dispatcher sweeps when no NOTIFY arrives")
    dispatch_coalesce: float = opt(
        0.02,
        "least seconds between dispatcher sweeps: writes within it are published together (0: a sweep per NOTIFY)",
    )
    dispatch_concurrency: int = opt(4, "consumers the dispatcher publishes to at the same time")
    publish_batch_size: int = 100
    """Outbox events the dispatcher claims per consumer and round."""
    publish_scan_per_consumer: int = 500
    """Most pending events of one consumer a sweep looks at."""
    publish_timeout: float = 30.0
    """Seconds one publish (a spec event, a resync response) may take before it counts as failed."""
    publish_backoff: Backoff = field(default=Backoff(min=0.5, max=30.0))
    """Delays before a failed publish of a resource is tried again."""
    ingest_concurrency: int = 8
    """Agent events handled at once (one at a time per resource)."""
    ingest_hold_limit: int = 10_000
    """Statuses held while the database is unavailable; beyond it their consumers are asked for a resync later."""
    ingest_retry: Backoff = field(default=Backoff(min=0.5, max=30.0))
    """Delays between attempts to store held statuses."""
    resync_backoff: Backoff = field(default=Backoff(min=1.0, max=60.0))
    """Delays before a failed status resync request is sent again."""


@dataclass(frozen=True)
class MaintenanceSettings:
    undelivered_resource_threshold: float = opt(600.0, "seconds without status before a spec is re-published")
    stale_delete_event_threshold: float = opt(3600.0, "seconds before an unacknowledged delete is retired")
    delete_republish_interval: float = opt(60.0, "seconds between re-publishes of an unconfirmed delete")
    maintenance_interval: float = opt(120.0, "seconds between repair rounds (undelivered, deletes, retention)")
    status_event_retention: float = opt(7 * 24 * 3600.0, "seconds the event logs keep history")
    event_versions_kept: int = opt(
        0,
        "spec versions of each resource the event log keeps, however recent (0: all within the retention);"
        " the latest version of every resource is always kept",
    )
    maintenance_page_size: int = 10_000
    """Rows one repair statement handles at most (a round pages through the rest)."""


@dataclass(frozen=True)
class LoggingSettings:
    log_level: str = opt("info", "debug, info, warning or error")
    log_format: Literal["text", "json"] = opt("text", "log line format")
    log_summary_interval: float = opt(
        60.0, "seconds between INFO lines counting published specs and stored statuses (none when idle; 0: off)"
    )


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    http: HTTPSettings = field(default_factory=HTTPSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    transport: TransportSettings = field(default_factory=TransportSettings)
    grpc: GRPCSettings = field(default_factory=GRPCSettings)
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    maintenance: MaintenanceSettings = field(default_factory=MaintenanceSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)

    @classmethod
    def of(cls, **values: Any) -> Settings:
        """Settings with the named fields (of any area, by their flat names) set and the rest defaults."""
        return cls().replace(**values)

    def replace(self, **values: Any) -> Settings:
        """A copy with the named fields (of any area, by their flat names) changed."""
        changes: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            if name not in _AREA_OF:
                raise TypeError(f"no setting named {name!r}")
            changes.setdefault(_AREA_OF[name], {})[name] = value
        areas = {area: dataclasses.replace(getattr(self, area), **fields) for area, fields in changes.items()}
        return dataclasses.replace(self, **areas)

    def to_json(self) -> dict[str, Any]:
        """Plain data for :meth:`from_json` (areas as objects, backoffs as objects)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Settings:
        areas: dict[str, Any] = {}
        for area in dataclasses.fields(cls):
            kind = _AREAS[area.name]
            hints = get_type_hints(kind)
            given = data.get(area.name, {})
            areas[area.name] = kind(
                **{name: Backoff(**value) if hints[name] is Backoff else value for name, value in given.items()}
            )
        return cls(**areas)

    @property
    def auth_enabled(self) -> bool:
        """Bearer tokens are required (REST and gRPC)."""
        return not self.auth.disable_auth and bool(self.auth.jwk_cert_file or self.auth.jwk_cert_url)

    @property
    def grpc_auth_enabled(self) -> bool:
        """gRPC callers must authenticate (a bearer token, or a client certificate) and are authorized per source."""
        return self.auth_enabled or (not self.auth.disable_auth and bool(self.grpc.grpc_client_ca_file))


TITLES = {
    "database": "database",
    "http": "HTTP listeners",
    "auth": "authentication (bearer JWTs checked against a JWKS, on REST and gRPC)",
    "transport": "MQTT transport",
    "grpc": "gRPC source API",
    "dispatch": "dispatch",
    "maintenance": "maintenance and event log retention",
    "logging": "logging",
}
"""--help's title of each area's group of flags."""

_AREAS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Settings)}  # type: ignore[misc]
_AREA_OF: dict[str, str] = {f.name: area for area, kind in _AREAS.items() for f in dataclasses.fields(kind)}


def flag_fields() -> Iterator[tuple[str, dataclasses.Field[Any]]]:
    """Every field that has a flag, with the name of its area, in --help order."""
    for area, kind in _AREAS.items():
        for f in dataclasses.fields(kind):
            if "help" in f.metadata:
                yield area, f


def flag_name(f: dataclasses.Field[Any]) -> str:
    return "--" + f.name.replace("_", "-")


def env_name(f: dataclasses.Field[Any]) -> str:
    return ENV_PREFIX + f.name.upper()


def _kind(area: str, name: str) -> Any:
    return get_type_hints(_AREAS[area])[name]


def _parse_backoff(text: str) -> Backoff:
    """``MIN,MAX`` in seconds, e.g. ``1,60``."""
    parts = text.split(",")
    if len(parts) != 2:
        raise ValueError(f"expected MIN,MAX in seconds, got {text!r}")
    try:
        low, high = (float(part) for part in parts)
    except ValueError:
        raise ValueError(f"expected MIN,MAX in seconds, got {text!r}") from None
    return Backoff(min=low, max=high)


def _flag_backoff(text: str) -> Backoff:
    try:
        return _parse_backoff(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shown(value: Any) -> str:
    """A default as --help shows it (a backoff as its flag's MIN,MAX)."""
    return f"{value.min:g},{value.max:g}" if isinstance(value, Backoff) else repr(value)


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def add_arguments(parser: argparse.ArgumentParser, *, only: set[str] | None = None) -> None:
    """Register one flag per settings field (or per field in ``only``), in one argument group per area."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for area, f in flag_fields():
        if only is not None and f.name not in only:
            continue
        if area not in groups:
            groups[area] = parser.add_argument_group(TITLES[area])
        group = groups[area]
        names = [flag_name(f), *f.metadata.get("aliases", ())]
        helptext = f"{f.metadata['help']} (env {env_name(f)}; default {_shown(f.default)})"
        kind = _kind(area, f.name)
        if kind is bool:
            group.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=helptext)
            continue
        choices = get_args(kind) if getattr(kind, "__origin__", None) is Literal else None
        conv: Any = {int: int, float: float, Backoff: _flag_backoff}.get(kind, str)
        metavar = "MIN,MAX" if kind is Backoff else None
        group.add_argument(
            *names, dest=f.name, type=conv, choices=choices, metavar=metavar, default=None, help=helptext
        )


def from_sources(args: argparse.Namespace | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Build settings from parsed flags, then the environment, then defaults. Bad values raise ValueError."""
    environ = dict(os.environ) if environ is None else environ
    values: dict[str, Any] = {}
    for area, f in flag_fields():
        given = getattr(args, f.name, None) if args is not None else None
        if given is not None:
            values[f.name] = given
            continue
        raw = environ.get(env_name(f))
        if raw is None:
            continue
        kind = _kind(area, f.name)
        try:
            if kind is bool:
                values[f.name] = _parse_bool(raw)
            elif kind is int:
                values[f.name] = int(raw)
            elif kind is float:
                values[f.name] = float(raw)
            elif kind is Backoff:
                values[f.name] = _parse_backoff(raw)
            else:
                choices = get_args(kind) if getattr(kind, "__origin__", None) is Literal else None
                if choices and raw not in choices:
                    raise ValueError(f"expected one of {', '.join(map(str, choices))}")
                values[f.name] = raw or None if "None" in str(kind) else raw
        except ValueError as exc:
            raise ValueError(f"{env_name(f)}={raw!r}: {exc}") from None
    return Settings.of(**values)
