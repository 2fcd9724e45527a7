"""The MQTT config file, in upstream's YAML format plus a few keys of ours.

Upstream keys: ``brokerHost`` (``host:port``), ``username``, ``password``, ``caFile``, ``clientCertFile``,
``clientKeyFile``, ``keepAlive`` (s), ``pubQoS``, ``subQoS``, ``dialTimeout`` (seconds, or a Go duration
such as ``"60s"``), ``topics`` (``sourceEvents``, ``agentEvents``, optional ``sourceBroadcast``,
``agentBroadcast``). Ours: ``protocolVersion`` (5, or 3 for MQTT 3.1.1, which forces structured mode),
``maxInflight`` (QoS 1 publishes awaiting PUBACK; the adapter also keeps below the broker's Receive
Maximum) and ``sessionExpiry`` (s; 0 asks for a clean session on every connect). Certificate paths are
relative to the config file. TLS is on when ``caFile`` is given or a client certificate is.

Errors are :class:`ConfigError` whose ``field`` is the key as written in the file.
"""

from __future__ import annotations

import dataclasses
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml

from protocol import topics
from protocol.errors import ConfigError, ProtocolError

DEFAULT_PORT: Final = 1883
DEFAULT_TLS_PORT: Final = 8883
_KEYS: Final = frozenset(
    {
        "brokerHost",
        "username",
        "password",
        "caFile",
        "clientCertFile",
        "clientKeyFile",
        "keepAlive",
        "pubQoS",
        "subQoS",
        "dialTimeout",
        "topics",
        "protocolVersion",
        "maxInflight",
        "sessionExpiry",
    }
)
_TOPIC_KEYS: Final = {
    "sourceEvents": "source_events",
    "agentEvents": "agent_events",
    "sourceBroadcast": "source_broadcast",
    "agentBroadcast": "agent_broadcast",
}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


@dataclasses.dataclass(frozen=True, slots=True)
class TopicsConfig:
    source_events: str
    """Spec events hub → agent: the hub's publish pattern (``+`` = consumer), the agent's subscription."""
    agent_events: str
    """Status events agent → hub: the hub's subscription (maybe ``$share/…``), the agent's publish topic."""
    source_broadcast: str | None = None
    agent_broadcast: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class MQTTConfig:
    host: str
    port: int
    topics: TopicsConfig
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    keep_alive: int = 60
    """Seconds between keep-alive pings."""
    pub_qos: int = 1
    sub_qos: int = 1
    dial_timeout: float = 60.0
    """Seconds allowed for one connection attempt (TCP + TLS + CONNACK)."""
    protocol_version: int = 5
    """5 (binary mode) or 3 (MQTT 3.1.1, structured mode)."""
    max_inflight: int = 100
    """Upper bound of unacknowledged QoS 1 publishes; the broker's Receive Maximum may lower it."""
    session_expiry: int = 3600
    """Seconds the broker keeps our session (subscriptions, queued QoS 1 messages) while we are away."""

    @property
    def tls(self) -> bool:
        return self.ca_file is not None or self.client_cert_file is not None

    @property
    def binary_mode(self) -> bool:
        """Binary content mode needs MQTT 5 user properties."""
        return self.protocol_version == 5

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context (server verified against ``caFile`` or the system store, optional client
        cert)."""
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("caFile", f"cannot load CA bundle: {exc}") from None
        if self.client_cert_file is not None and self.client_key_file is not None:
            try:
                context.load_cert_chain(str(self.client_cert_file), str(self.client_key_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError("clientCertFile", f"cannot load client certificate/key: {exc}") from None
        return context


def load(path: str | Path) -> MQTTConfig:
    """Read and validate a config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("file", f"cannot read {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("file", f"{path} is not valid YAML: {exc}") from None
    return from_mapping(data if data is not None else {}, base_dir=path.parent)


def from_mapping(data: object, *, base_dir: Path | None = None) -> MQTTConfig:
    """Validate an already-parsed config; relative certificate paths are resolved against ``base_dir``."""
    if not isinstance(data, Mapping):
        raise ConfigError("file", "the config must be a mapping")
    unknown = sorted(str(k) for k in data if k not in _KEYS)
    if unknown:
        raise ConfigError(unknown[0], "unknown key")
    host, port = _host_port(data.get("brokerHost"), tls=bool(data.get("caFile") or data.get("clientCertFile")))
    cert = _path(data, "clientCertFile", base_dir)
    key = _path(data, "clientKeyFile", base_dir)
    if (cert is None) != (key is None):
        raise ConfigError(
            "clientKeyFile" if key is None else "clientCertFile",
            "clientCertFile and clientKeyFile go together",
        )
    version = _int(data, "protocolVersion", 5)
    if version == 4:
        version = 3  # NB: 4 is MQTT 3.1.1's protocol level on the wire; accept it as a synonym.
    if version not in (3, 5):
        raise ConfigError("protocolVersion", f"must be 5 or 3 (MQTT 3.1.1), got {version}")
    return MQTTConfig(
        host=host,
        port=port,
        topics=_topics(data.get("topics")),
        username=_str(data, "username"),
        password=_str(data, "password"),
        ca_file=_path(data, "caFile", base_dir),
        client_cert_file=cert,
        client_key_file=key,
        keep_alive=_int(data, "keepAlive", 60, minimum=0, maximum=65535),
        pub_qos=_int(data, "pubQoS", 1, minimum=0, maximum=2),
        sub_qos=_int(data, "subQoS", 1, minimum=0, maximum=2),
        dial_timeout=_duration(data, "dialTimeout", 60.0),
        protocol_version=version,
        max_inflight=_int(data, "maxInflight", 100, minimum=1, maximum=65534),
        session_expiry=_int(data, "sessionExpiry", 3600, minimum=0, maximum=0xFFFFFFFF),
    )


def _host_port(value: object, *, tls: bool) -> tuple[str, int]:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("brokerHost", "required, as host:port")
    value = value.strip()
    default = DEFAULT_TLS_PORT if tls else DEFAULT_PORT
    if value.startswith("["):  # [ipv6]:port
        host, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    else:
        host, port_text = value, ""
    if not host:
        raise ConfigError("brokerHost", f"no host in {value!r}")
    if not port_text:
        return host, default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError("brokerHost", f"invalid port in {value!r}")
    return host, int(port_text)


def _topics(value: object) -> TopicsConfig:
    if not isinstance(value, Mapping):
        raise ConfigError("topics", "required: a mapping with sourceEvents and agentEvents")
    found: dict[str, str] = {}
    for key, field in _TOPIC_KEYS.items():
        topic = value.get(key)
        if topic is None:
            continue
        if not isinstance(topic, str):
            raise ConfigError(f"topics.{key}", "must be a string")
        try:
            found[field] = topics.validate_filter(topic)
        except ProtocolError as exc:
            raise ConfigError(f"topics.{key}", str(exc)) from None
    for key in ("sourceEvents", "agentEvents"):
        if _TOPIC_KEYS[key] not in found:
            raise ConfigError(f"topics.{key}", "required")
    unknown = sorted(str(k) for k in value if k not in _TOPIC_KEYS)
    if unknown:
        raise ConfigError(f"topics.{unknown[0]}", "unknown key")
    return TopicsConfig(**found)


def _str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(key, "must be a string")
    return value


def _path(data: Mapping[str, Any], key: str, base_dir: Path | None) -> Path | None:
    text = _str(data, key)
    if text is None:
        return None
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise ConfigError(key, f"no such file: {path}")
    return path


def _int(data: Mapping[str, Any], key: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    value = data.get(key, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ConfigError(key, f"must be within {minimum}..{maximum if maximum is not None else '∞'}, got {value}")
    return value


def _duration(data: Mapping[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool):
        raise ConfigError(key, f"must be a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ConfigError(key, f"must be seconds or a duration such as '60s', got {value!r}")
    if seconds <= 0:
        raise ConfigError(key, "must be positive")
    return seconds
