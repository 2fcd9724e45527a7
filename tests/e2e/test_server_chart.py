"""The hub's Helm chart (``charts/maestro-server``) with a real helm, a real control plane, Mosquitto and the hub.

- ``helm lint`` and ``helm template`` with the minimal values, with non-default ones (two replicas and broadcast,
  the database as five fields, gRPC TLS, a JWKS, a ServiceMonitor) and with the development PostgreSQL and
  Mosquitto; ``values.schema.json`` and the templates' own checks turn bad values into ``helm`` errors;
- the rendered ``maestro server`` and ``maestro migration`` command lines, with their environment built as the
  kubelet builds it (Secret keys, the pod name, ``$(VAR)`` expansion), are accepted by the real ``maestro``
  entry point (its parser, environment twins and settings checks) and give the intended settings;
- every rendered object passes ``kubectl apply --dry-run=server`` (the ServiceMonitor aside: prometheus-operator's
  CRD is not on this cluster); ``helm install --wait`` works (kwok plays the kubelet) and ``helm upgrade`` keeps
  the generated passwords;
- the rendered Mosquitto config, password script and ACL run in a real mosquitto: each agent (configured by the
  maestro-agent chart) gets only its own consumer's messages and cannot forge another's status;
- the real ``maestro migration`` and ``maestro server``, started with the rendered arguments and environment
  against the session PostgreSQL and that mosquitto, migrate and become ready.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import io
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from protocol import mqtt, mqtt_config
from protocol.cloudevents_mqtt import MQTTMessage
from protocol.errors import BrokerError, ConnectError, SubscribeError
from server import cli as server_cli
from server import settings as server_settings
from tests.e2e.conftest import KubectlRunner
from tests.e2e.hub_support import REPO_ROOT, free_port
from tests.e2e.schema_support import cluster_version, schema_errors
from tests.fixtures.mosquitto import MosquittoServer

CHART = REPO_ROOT / "charts" / "maestro-server"
AGENT_CHART = REPO_ROOT / "charts" / "maestro-agent"
JWKS_URL = "https://sso.example.com/jwks"
MINIMAL = (
    "database.url=postgresql://maestro:s3cret@db.example.com:5432/maestro",
    "messageBroker.mqtt.host=broker",
    f"auth.jwkCertUrl={JWKS_URL}",
)
AUTH_OFF = "auth.disabled=true"
DEV = ("postgresql.enabled=true", "mosquitto.enabled=true", "mosquitto.agents={cluster1,cluster2}", AUTH_OFF)
POD = "rel-maestro-7d4b9c-x2k8q"


def helm(helm_bin: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([helm_bin, *args], capture_output=True, text=True, timeout=60)
    if check and res.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({res.returncode}):\n{res.stderr}{res.stdout}")
    return res


def sets(*pairs: str) -> list[str]:
    """``sets("a=1", "b=2")`` → ``["--set", "a=1", "--set", "b=2"]``."""
    return [arg for pair in pairs for arg in ("--set", pair)]


def render(helm_bin: str, release: str, namespace: str, *args: str, chart: Path = CHART) -> list[dict[str, Any]]:
    out = helm(helm_bin, "template", release, str(chart), "--namespace", namespace, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} rendered"
    return found[0]


def pod_spec(objects: list[dict[str, Any]], name: str | None = None) -> dict[str, Any]:
    """The pod of the Deployment ``name``; by default the hub's (component ``server``)."""
    if name is None:
        [dep] = [
            o for o in objects
            if o["kind"] == "Deployment" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "server"
        ]  # fmt: skip
    else:
        dep = find(objects, "Deployment", name)
    spec: dict[str, Any] = dep["spec"]["template"]["spec"]
    return spec


def hub_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [container] = pod_spec(objects)["containers"]
    assert container["command"] == ["maestro", "server"]
    return dict(container)


def migration_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [container] = pod_spec(objects)["initContainers"]
    assert container["command"] == ["maestro", "migration"]
    return dict(container)


def broker_config(objects: list[dict[str, Any]], secret: str = "rel-maestro-mqtt") -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(find(objects, "Secret", secret)["stringData"]["config.yaml"])
    return config


# -- what the kubelet and `maestro` do with a rendered container ---------------------------------------------


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined variables are replaced, others left as written."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), text)


def container_env(container: dict[str, Any], objects: list[dict[str, Any]], *, pod: str = POD) -> dict[str, str]:
    """The container's environment as the kubelet builds it, in order, from the rendered Secrets."""
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = _expand(str(entry["value"]), env)
            continue
        source = entry["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[entry["name"]] = str(find(objects, "Secret", ref["name"])["stringData"][ref["key"]])
        else:
            assert source["fieldRef"]["fieldPath"] == "metadata.name", source
            env[entry["name"]] = pod
    return env


def container_args(container: dict[str, Any], env: dict[str, str]) -> list[str]:
    return [_expand(str(arg), env) for arg in container["args"]]


def _maestro(monkeypatch: pytest.MonkeyPatch, command: str, args: list[str], env: dict[str, str]) -> Any:
    """Run the real ``maestro <command> <args>`` entry point (``server.cli.main``) in the environment ``env`` and
    return what it would have started with: the server's Settings, or the URL ``maestro migration`` migrates.
    Only the last step is replaced (the runner, the migration, the logging set-up), so the parser, the
    ``MAESTRO_*`` environment twins and the settings checks are the product's."""
    from server import logging_setup, migrate, runner

    # NB: without a URL, `maestro migration` would start an embedded PostgreSQL instead.
    assert command != "migration" or "MAESTRO_DB_URL" in env, "no database URL for maestro migration"
    started: list[Any] = []

    async def run(settings: server_settings.Settings) -> int:
        started.append(settings)
        return 0

    def apply(url: str) -> int:
        started.append(url)
        return 0

    stderr = io.StringIO()
    with monkeypatch.context() as mp, contextlib.redirect_stderr(stderr):
        for key in os.environ:
            if key.startswith(("MAESTRO_", "PG")):
                mp.delenv(key)
        for key, value in env.items():
            mp.setenv(key, value)
        mp.setattr(runner, "run", run)
        mp.setattr(migrate, "apply", apply)
        mp.setattr(logging_setup, "configure", lambda *args, **kwargs: None)
        try:
            code = server_cli.main([command, *args])
        except SystemExit as exc:
            raise AssertionError(f"maestro {command} refused {args}: {stderr.getvalue()}") from exc
    assert code == 0, f"maestro {command} {args}: exit {code}: {stderr.getvalue()}"
    [result] = started
    return result


def release_name() -> str:
    return f"srv-{uuid.uuid4().hex[:6]}"


# -- rendering and the schema -----------------------------------------------------------------------------------


def test_lint(helm_bin: str) -> None:
    for pairs in (MINIMAL, DEV):
        result = helm(helm_bin, "lint", "--strict", str(CHART), *sets(*pairs))
        assert "0 chart(s) failed" in result.stdout


def test_template_minimal(helm_bin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render(helm_bin, "rel", "hub", *sets(*MINIMAL))
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == [
        ("Deployment", "rel-maestro"),
        ("Secret", "rel-maestro-db"),
        ("Secret", "rel-maestro-mqtt"),
        ("Service", "rel-maestro"),
        ("Service", "rel-maestro-grpc"),
        ("Service", "rel-maestro-healthcheck"),
        ("Service", "rel-maestro-metrics"),
        ("ServiceAccount", "rel-maestro"),
    ]
    assert all(o["metadata"]["namespace"] == "hub" for o in objects)
    ports = {o["metadata"]["name"]: o["spec"]["ports"] for o in objects if o["kind"] == "Service"}
    assert {name: [(p["name"], p["port"]) for p in value] for name, value in ports.items()} == {
        "rel-maestro": [("http", 8000)],
        "rel-maestro-grpc": [("grpc", 8090)],
        "rel-maestro-healthcheck": [("http-health", 8083)],
        "rel-maestro-metrics": [("http-metrics", 8080)],
    }

    dep = find(objects, "Deployment")
    assert dep["spec"]["replicas"] == 1
    pod = pod_spec(objects)
    assert pod["serviceAccountName"] == "rel-maestro"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    hub = hub_container(objects)
    assert hub["image"] == "quay.io/maestro-py/maestro:0.1.0"
    assert hub["args"] == [
        "--server-hostname=0.0.0.0",
        "--http-server-bindport=8000",
        "--enable-grpc-server",
        "--grpc-server-bindport=8090",
        "--health-check-server-bindport=8083",
        "--metrics-server-bindport=8080",
        "--source-id=maestro",
        "--client-id=maestro-$(POD_NAME)",
        "--mqtt-config-file=/secrets/mqtt/config.yaml",
        "--subscription-type=shared",
        "--db-max-open-connections=50",
        f"--jwk-cert-url={JWKS_URL}",
        "--log-level=info",
        "--log-format=text",
    ]
    assert hub["readinessProbe"]["httpGet"] == {"path": "/healthcheck", "port": "http-health"}
    assert hub["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http-health"}
    assert {p["name"]: p["containerPort"] for p in hub["ports"]} == {
        "http": 8000, "grpc": 8090, "http-health": 8083, "http-metrics": 8080,
    }  # fmt: skip
    for container in (hub, migration_container(objects)):
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["tmp"] == "/tmp"
    assert "emptyDir" in {v["name"]: v for v in pod["volumes"]}["tmp"]

    # The command lines as the pod runs them: the real parser accepts them and the settings are the chart's.
    env = container_env(hub, objects)
    settings = _maestro(monkeypatch, "server", container_args(hub, env), env)
    assert settings.transport.client_id == f"maestro-{POD}"
    assert settings.http.server_hostname == "0.0.0.0"
    assert settings.database.db_url == "postgresql://maestro:s3cret@db.example.com:5432/maestro"
    assert settings.transport.mqtt_config_file == "/secrets/mqtt/config.yaml"
    assert settings.auth_enabled
    assert settings.auth.jwk_cert_url == JWKS_URL
    assert (settings.transport.subscription_type, settings.transport.source_id, settings.grpc.enable_grpc_server) == (
        "shared",
        "maestro",
        True,
    )
    assert (settings.http.http_server_bindport, settings.grpc.grpc_server_bindport) == (8000, 8090)
    assert (settings.http.health_check_server_bindport, settings.http.metrics_server_bindport) == (8083, 8080)
    assert not any("s3cret" in arg for arg in hub["args"])  # the URL travels in the environment only
    assert env["PGSSLMODE"] == "prefer"
    migration = migration_container(objects)
    migration_env = container_env(migration, objects)
    assert (
        _maestro(monkeypatch, "migration", container_args(migration, migration_env), migration_env)
        == settings.database.db_url
    )

    # The broker config is upstream's format, and the hub's own parser accepts it.
    raw = broker_config(objects)
    assert raw["topics"] == {
        "sourceEvents": "sources/maestro/consumers/+/sourceevents",
        "agentEvents": "$share/statussubscribers/sources/maestro/consumers/+/agentevents",
    }
    config = mqtt_config.from_mapping(raw)
    assert (config.host, config.port, config.protocol_version, config.username) == ("broker", 1883, 5, None)


DB_PASSWORD = "p@ss:/w%rd#?&"
NON_DEFAULT_VALUES: dict[str, Any] = {
    "replicas": 2,
    "subscriptionType": "broadcast",
    "sourceId": "hub-a",
    "database": {
        "host": "db.example.com",
        "port": 6432,
        "user": "hub",
        "password": DB_PASSWORD,
        "name": "maestro_a",
        "sslMode": "verify-full",
        "caSecret": "db-ca",
        "maxOpenConnections": 20,
    },
    "messageBroker": {
        "mqtt": {
            "host": "mqtt.example.com",
            "port": 8883,
            "username": "hub-a",
            "password": "mq",
            "existingTlsSecret": "mqtt-tls",
        }
    },
    "server": {
        "grpc": {"tls": {"existingSecret": "grpc-tls", "clientCaKey": "ca.crt"}},
        "logFormat": "json",
        "extraArgs": ["--heartbeat-interval=5"],
        "extraEnv": [{"name": "OTEL_SERVICE_NAME", "value": "maestro"}],
    },
    "auth": {"jwksConfigMap": "jwks", "issuer": "https://issuer.example.com", "audience": "maestro"},
    "service": {"type": "NodePort", "httpNodePort": 30080, "grpcNodePort": 30090},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
}


def test_template_non_default(helm_bin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    password = DB_PASSWORD
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(NON_DEFAULT_VALUES))
    objects = render(helm_bin, "rel", "hub", "-f", str(values))
    assert find(objects, "Deployment")["spec"]["replicas"] == 2

    hub = hub_container(objects)
    env = container_env(hub, objects)
    settings = _maestro(monkeypatch, "server", container_args(hub, env), env)
    assert settings.transport.subscription_type == "broadcast"
    assert settings.transport.source_id == "hub-a"
    assert settings.grpc.grpc_tls_cert_file == "/secrets/grpc-tls/tls.crt"
    assert settings.grpc.grpc_client_ca_file == "/secrets/grpc-tls/ca.crt"
    assert settings.auth.jwk_cert_file == "/secrets/jwks/jwks.json"
    assert (settings.auth.jwt_issuer, settings.auth.jwt_audience) == ("https://issuer.example.com", "maestro")
    assert (
        settings.logging.log_format,
        settings.transport.heartbeat_interval,
        settings.database.db_max_open_connections,
    ) == ("json", 5.0, 20)
    # Five fields: no credentials in the URL, libpq's variables carry them verbatim (no percent-encoding).
    assert settings.database.db_url == "postgresql://db.example.com:6432/maestro_a"
    assert (env["PGUSER"], env["PGPASSWORD"]) == ("hub", password)
    assert (env["PGSSLMODE"], env["PGSSLROOTCERT"]) == ("verify-full", "/secrets/db-ca/ca.crt")
    assert env["OTEL_SERVICE_NAME"] == "maestro"
    migration = migration_container(objects)
    migration_env = container_env(migration, objects)
    assert (
        _maestro(monkeypatch, "migration", container_args(migration, migration_env), migration_env)
        == settings.database.db_url
    )
    assert migration_env["PGPASSWORD"] == password
    assert find(objects, "Secret", "rel-maestro-db")["stringData"] == {
        "db.host": "db.example.com", "db.port": "6432", "db.user": "hub", "db.password": password,
        "db.name": "maestro_a",
    }  # fmt: skip
    mounts = {m["name"]: m["mountPath"] for m in hub["volumeMounts"]}
    assert mounts == {
        "broker-config": "/secrets/mqtt", "broker-tls": "/secrets/mqtt-tls", "grpc-tls": "/secrets/grpc-tls",
        "jwks": "/secrets/jwks", "db-ca": "/secrets/db-ca", "tmp": "/tmp",
    }  # fmt: skip

    # Broadcast: every replica subscribes to the status topic itself, no $share.
    assert broker_config(objects) == {
        "brokerHost": "mqtt.example.com:8883",
        "username": "hub-a",
        "password": "mq",
        "protocolVersion": 5,
        "keepAlive": 60,
        "caFile": "/secrets/mqtt-tls/ca.crt",  # NB: from_mapping() would look for this file
        "topics": {
            "sourceEvents": "sources/hub-a/consumers/+/sourceevents",
            "agentEvents": "sources/hub-a/consumers/+/agentevents",
        },
    }

    node_ports = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "Service"}
    assert node_ports["rel-maestro"]["type"] == "NodePort"
    assert node_ports["rel-maestro"]["ports"][0]["nodePort"] == 30080
    assert node_ports["rel-maestro-grpc"]["ports"][0]["nodePort"] == 30090
    assert node_ports["rel-maestro-metrics"]["type"] == "ClusterIP"

    # The ServiceMonitor selects the metrics Service, and only it, by its port name.
    monitor = find(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [o for o in objects if o["kind"] == "Service" and selector.items() <= o["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in selected] == ["rel-maestro-metrics"]
    assert monitor["spec"]["endpoints"][0]["port"] == selected[0]["spec"]["ports"][0]["name"]

    # gRPC off: no gRPC Service, port or flags.
    objects = render(helm_bin, "rel", "hub", *sets(*MINIMAL, "server.grpc.enabled=false"))
    assert "rel-maestro-grpc" not in {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    hub = hub_container(objects)
    assert not _maestro(monkeypatch, "server", hub["args"], {}).grpc.enable_grpc_server
    assert "grpc" not in {p["name"] for p in hub["ports"]}

    # Existing Secrets (upstream's maestro-rds layout, a whole broker config): the chart writes neither.
    objects = render(
        helm_bin, "maestro", "maestro",
        *sets(
            "database.existingSecret=maestro-rds", "messageBroker.mqtt.existingSecret=maestro-mqtt-config", AUTH_OFF,
        ),
    )  # fmt: skip
    assert [o["kind"] for o in objects if o["kind"] == "Secret"] == []
    hub = hub_container(objects)
    assert "--disable-auth" in hub["args"]
    assert _maestro(monkeypatch, "server", hub["args"], {}).auth.disable_auth
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in hub["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert refs["DB_HOST"] == {"name": "maestro-rds", "key": "db.host"}
    assert refs["PGPASSWORD"] == {"name": "maestro-rds", "key": "db.password"}
    assert {"name": "broker-config", "secret": {"secretName": "maestro-mqtt-config"}} in pod_spec(objects)["volumes"]
    objects = render(
        helm_bin, "maestro", "maestro",
        *sets(
            "database.existingSecret=rds", "database.existingSecretUrlKey=url", "messageBroker.mqtt.host=b", AUTH_OFF,
        ),
    )  # fmt: skip
    [url_ref] = [e for e in hub_container(objects)["env"] if e["name"] == "MAESTRO_DB_URL"]
    assert url_ref["valueFrom"]["secretKeyRef"] == {"name": "rds", "key": "url"}


def test_template_development_services(helm_bin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render(helm_bin, "rel", "hub", *sets(*DEV))
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == [
        ("ConfigMap", "rel-maestro-mqtt"),
        ("Deployment", "rel-maestro"),
        ("Deployment", "rel-maestro-mqtt"),
        ("Deployment", "rel-maestro-postgresql"),
        ("Secret", "rel-maestro-db"),
        ("Secret", "rel-maestro-mqtt"),
        ("Secret", "rel-maestro-mqtt-users"),
        ("Service", "rel-maestro"),
        ("Service", "rel-maestro-grpc"),
        ("Service", "rel-maestro-healthcheck"),
        ("Service", "rel-maestro-metrics"),
        ("Service", "rel-maestro-mqtt"),
        ("Service", "rel-maestro-postgresql"),
        ("ServiceAccount", "rel-maestro"),
    ]
    for name in ("rel-maestro-postgresql", "rel-maestro-mqtt"):
        assert find(objects, "Deployment", name)["metadata"]["annotations"]["maestro-py.io/development-only"] == "true"

    # PostgreSQL: the hub and the database read one Secret; the password was generated.
    db = find(objects, "Secret", "rel-maestro-db")["stringData"]
    assert (db["db.host"], db["db.port"], db["db.user"], db["db.name"]) == (
        "rel-maestro-postgresql", "5432", "maestro", "maestro",
    )  # fmt: skip
    assert len(db["db.password"]) == 32
    hub = hub_container(objects)
    env = container_env(hub, objects)
    assert (
        _maestro(monkeypatch, "server", container_args(hub, env), env).database.db_url
        == "postgresql://rel-maestro-postgresql:5432/maestro"
    )
    assert env["PGPASSWORD"] == db["db.password"]
    [postgres] = pod_spec(objects, "rel-maestro-postgresql")["containers"]
    assert container_env(postgres, objects)["POSTGRES_PASSWORD"] == db["db.password"]
    volumes = {v["name"]: v for v in pod_spec(objects, "rel-maestro-postgresql")["volumes"]}
    assert "emptyDir" in volumes["data"]

    # Mosquitto: the hub is "maestro" with the users Secret's password; every agent has one; the ACL confines them.
    users = find(objects, "Secret", "rel-maestro-mqtt-users")["stringData"]
    assert sorted(users) == ["cluster1", "cluster2", "maestro"]
    config = mqtt_config.from_mapping(broker_config(objects))
    assert (config.host, config.port, config.username, config.password) == (
        "rel-maestro-mqtt", 1883, "maestro", users["maestro"],
    )  # fmt: skip
    broker = find(objects, "ConfigMap", "rel-maestro-mqtt")["data"]
    assert "allow_anonymous false" in broker["mosquitto.conf"].splitlines()
    rules = [line for line in broker["acl"].splitlines() if line and not line.startswith("#")]
    assert rules == [
        "user maestro",
        "topic write sources/maestro/consumers/+/sourceevents",
        "topic read sources/maestro/consumers/+/agentevents",
        "user cluster1",
        "topic read sources/maestro/consumers/cluster1/sourceevents",
        "topic write sources/maestro/consumers/cluster1/agentevents",
        "user cluster2",
        "topic read sources/maestro/consumers/cluster2/sourceevents",
        "topic write sources/maestro/consumers/cluster2/agentevents",
    ]
    broker_pod = pod_spec(objects, "rel-maestro-mqtt")
    assert broker_pod["containers"][0]["command"] == ["mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
    assert broker_pod["securityContext"]["runAsUser"] == 1883

    # A user-managed users Secret: the chart writes none and wants the hub's password.
    objects = render(
        helm_bin, "rel", "hub",
        *sets(*DEV, "mosquitto.existingSecret=mqtt-users", "messageBroker.mqtt.password=hubpw"),
    )  # fmt: skip
    assert "rel-maestro-mqtt-users" not in {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"}
    assert broker_config(objects)["password"] == "hubpw"
    volumes = {v["name"]: v for v in pod_spec(objects, "rel-maestro-mqtt")["volumes"]}
    assert volumes["users"]["secret"]["secretName"] == "mqtt-users"


BAD_VALUES = {
    # values.schema.json
    "typo": (("replica=2", *MINIMAL), "replica"),
    "typo-nested": (("server.grcp.port=1", *MINIMAL), "grcp"),
    "type": (("replicas=two", *MINIMAL), "/replicas"),
    "enum": (("subscriptionType=fanout", *MINIMAL), "/subscriptionType"),
    "source-id": (("sourceId=Maestro", *MINIMAL), "/sourceId"),
    "db-url": ((*MINIMAL, "database.url=mysql://db/maestro"), "/database/url"),
    "ssl-mode": (("database.sslMode=on", *MINIMAL), "/database/sslMode"),
    "agent-name": ((*DEV, "mosquitto.agents={Cluster_1}"), "/mosquitto/agents/0"),
    "agent-is-hub": ((*DEV, "mosquitto.agents={maestro}"), "/mosquitto/agents/0"),
    "duration": (("metrics.serviceMonitor.interval=often", *MINIMAL), "/metrics/serviceMonitor/interval"),
    # the templates' checks
    "no-database": (MINIMAL[1:], "no database"),
    "no-broker": ((MINIMAL[0], MINIMAL[2]), "no MQTT broker"),
    "no-auth": (MINIMAL[:2], "no authentication"),
    "auth-both-ways": ((*MINIMAL, AUTH_OFF), "choose one"),
    "two-databases": ((*MINIMAL, "database.host=db2"), "only one of"),
    "dev-db-and-url": ((*DEV, MINIMAL[0]), "leave database.url"),
    "dev-broker-and-host": ((*DEV, "messageBroker.mqtt.host=b"), "leave messageBroker.mqtt.host"),
    "agents-without-broker": ((*MINIMAL, "mosquitto.agents={cluster1}"), "mosquitto.enabled is false"),
    "users-secret-without-password": ((*DEV, "mosquitto.existingSecret=u"), "messageBroker.mqtt.password"),
    "tls-without-files": (
        (*MINIMAL, "messageBroker.mqtt.existingTlsSecret=t", "messageBroker.mqtt.tlsKeys.ca="), "names neither",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("pairs", "error"), list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_bad_values_fail(helm_bin: str, pairs: tuple[str, ...], error: str) -> None:
    for command in ("template", "install"):
        extra = ["--dry-run=client"] if command == "install" else []
        result = helm(helm_bin, command, "rel", str(CHART), "--namespace", "hub", *extra, *sets(*pairs), check=False)
        assert result.returncode != 0, f"helm {command} accepted {pairs}:\n{result.stdout[:2000]}"
        assert error in result.stderr, result.stderr


VALUE_SETS: dict[str, tuple[str, ...]] = {
    "minimal": MINIMAL,
    "development": (*DEV, "replicas=2", "subscriptionType=broadcast", "metrics.serviceMonitor.enabled=true"),
    "database-fields": (
        "database.host=db", "database.password=x", "database.caSecret=ca", "messageBroker.mqtt.host=b",
        "server.grpc.tls.existingSecret=grpc", "auth.jwksConfigMap=jwks", "service.type=NodePort",
        "mosquitto.enabled=false", "serviceAccount.create=false",
        "server.extraVolumes[0].name=authz", "server.extraVolumes[0].configMap.name=authz",
        "server.extraVolumeMounts[0].name=authz", "server.extraVolumeMounts[0].mountPath=/config/authz",
    ),
}  # fmt: skip
"""Value sets rendered for the server-side dry-run and the offline schema check."""


@pytest.mark.parametrize("pairs", list(VALUE_SETS.values()), ids=list(VALUE_SETS))
def test_rendered_objects_match_the_kubernetes_schema(helm_bin: str, pairs: tuple[str, ...]) -> None:
    """Offline, strict (unknown fields are errors), for the e2e cluster's Kubernetes version."""
    objects = render(helm_bin, "rel", "hub", *sets(*pairs))
    assert not schema_errors(objects), f"Kubernetes {cluster_version()}:\n" + "\n".join(schema_errors(objects))


def test_rendered_non_default_values_match_the_kubernetes_schema(helm_bin: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(NON_DEFAULT_VALUES))
    assert not schema_errors(render(helm_bin, "rel", "hub", "-f", str(values)))


def test_the_schema_check_catches_what_the_values_schema_lets_through(helm_bin: str) -> None:
    """``server.extraEnv`` items are checked for a name only: a misspelt key renders; the Kubernetes schema sees it."""
    objects = render(helm_bin, "rel", "hub", *sets(*MINIMAL, "server.extraEnv[0].name=X", "server.extraEnv[0].vaule=y"))
    [error] = schema_errors(objects)
    assert re.fullmatch(
        r"Deployment rel-maestro: spec\.template\.spec\.containers\.0\.env\.\d+:"
        r" Additional properties are not allowed \('vaule' was unexpected\)",
        error,
    ), error


# -- against the cluster ----------------------------------------------------------------------------------------


def test_rendered_manifests_pass_server_dry_run(helm_bin: str, kubectl: KubectlRunner, namespace: str) -> None:
    """Every rendered object but the ServiceMonitor (prometheus-operator's CRD is not on this cluster)."""
    for pairs in VALUE_SETS.values():
        out = helm(helm_bin, "template", release_name(), str(CHART), "--namespace", namespace, *sets(*pairs)).stdout
        docs = [doc for doc in yaml.safe_load_all(out) if doc and doc["kind"] != "ServiceMonitor"]
        assert "Deployment" in {doc["kind"] for doc in docs}
        result = kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(docs))
        assert result.stdout.count("(server dry run)") == len(docs), result.stdout


def _secret_data(kubectl: KubectlRunner, namespace: str, name: str) -> dict[str, str]:
    secret = json.loads(kubectl("get", "secret", name, "-n", namespace, "-o", "json").stdout)
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def test_install_and_upgrade_keep_passwords(
    helm_bin: str, kubectl: KubectlRunner, kubeconfig: str, namespace: str
) -> None:
    """``helm install --wait`` (kwok reports the pods ready), then ``helm upgrade`` with one more agent: the
    generated passwords stay, the new agent gets one, the hub keeps its broker password."""
    release = "maestro"
    common = ["--namespace", namespace, "--kubeconfig", kubeconfig, "--wait", "--timeout", "120s"]
    helm(helm_bin, "install", release, str(CHART), *common, *sets(*DEV))
    try:
        for name in ("maestro", "maestro-postgresql", "maestro-mqtt"):
            available = kubectl(
                "get", "deployment", name, "-n", namespace, "-o", "jsonpath={.status.availableReplicas}"
            )
            assert available.stdout == "1", name
        services = kubectl("get", "services", "-n", namespace, "-o", "name").stdout.split()
        assert sorted(services) == [
            f"service/maestro{suffix}" for suffix in ("", "-grpc", "-healthcheck", "-metrics", "-mqtt", "-postgresql")
        ]
        users = _secret_data(kubectl, namespace, "maestro-mqtt-users")
        db = _secret_data(kubectl, namespace, "maestro-db")

        more_agents = sets(*DEV, "mosquitto.agents={cluster1,cluster2,cluster3}")
        helm(helm_bin, "upgrade", release, str(CHART), *common, *more_agents)
        after = _secret_data(kubectl, namespace, "maestro-mqtt-users")
        assert {k: after[k] for k in users} == users
        assert len(after["cluster3"]) == 32
        assert _secret_data(kubectl, namespace, "maestro-db") == db
        hub_config = yaml.safe_load(_secret_data(kubectl, namespace, "maestro-mqtt")["config.yaml"])
        assert hub_config["password"] == users["maestro"]
        acl = kubectl("get", "configmap", "maestro-mqtt", "-n", namespace, "-o", "jsonpath={.data.acl}").stdout
        assert "user cluster3" in acl
    finally:
        helm(helm_bin, "uninstall", release, "--namespace", namespace, "--kubeconfig", kubeconfig, check=False)


# -- the rendered broker, and the rendered hub, for real ----------------------------------------------------------


def _mosquitto_binary(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/usr/local/sbin/{name}") if os.path.exists(p)), None
    )
    if found is None:  # NB: a failure, not a skip, as tests/fixtures/mosquitto.py does
        pytest.fail(f"{name} is not installed (apt-get install -y mosquitto)")
    return found


def _as_mosquitto_user() -> pwd.struct_passwd | None:
    """Root runs the broker's files as the ``mosquitto`` user (mosquitto drops to it), as the pod does."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("mosquitto")
    except KeyError:
        return None


@dataclasses.dataclass
class ChartBroker:
    """A real mosquitto running the chart's rendered config, ACL and password file."""

    server: MosquittoServer
    objects: list[dict[str, Any]]
    release: str
    namespace: str

    @property
    def users(self) -> dict[str, str]:
        data: dict[str, str] = find(self.objects, "Secret", f"{self.release}-maestro-mqtt-users")["stringData"]
        return data

    def hub_config(self) -> mqtt_config.MQTTConfig:
        raw = broker_config(self.objects, f"{self.release}-maestro-mqtt")
        raw["brokerHost"] = f"{self.server.host}:{self.server.port}"
        raw["dialTimeout"] = 5
        return mqtt_config.from_mapping(raw)

    def write_hub_config(self, path: Path) -> Path:
        raw = broker_config(self.objects, f"{self.release}-maestro-mqtt")
        raw["brokerHost"] = f"{self.server.host}:{self.server.port}"
        path.write_text(yaml.safe_dump(raw))
        return path

    def agent_config(self, helm_bin: str, consumer: str) -> mqtt_config.MQTTConfig:
        """The maestro-agent chart's broker config for ``consumer``, with this broker's credentials for it."""
        objects = render(
            helm_bin, "agent", "maestro-agent",
            *sets(
                f"consumerName={consumer}",
                f"messageBroker.mqtt.host={self.release}-maestro-mqtt.{self.namespace}",
                f"messageBroker.mqtt.username={consumer}",
                f"messageBroker.mqtt.password={self.users[consumer]}",
            ),
            chart=AGENT_CHART,
        )  # fmt: skip
        raw = broker_config(objects, "agent-maestro-agent-mqtt")
        raw["brokerHost"] = f"{self.server.host}:{self.server.port}"
        raw["dialTimeout"] = 5
        return mqtt_config.from_mapping(raw)


def _start_rendered_mosquitto(objects: list[dict[str, Any]], directory: Path) -> MosquittoServer:
    """Do what the broker's pod does, in ``directory``: the init container's script writes the hashed password
    file from the users Secret, then mosquitto runs the rendered mosquitto.conf and ACL (listener, paths and log
    moved into ``directory``)."""
    for sub in ("users", "auth", "config", "data"):
        (directory / sub).mkdir()
    for user, password in find(objects, "Secret", "rel-maestro-mqtt-users")["stringData"].items():
        (directory / "users" / user).write_text(password)
    files = find(objects, "ConfigMap", "rel-maestro-mqtt")["data"]
    (directory / "config" / "acl").write_text(files["acl"])
    owner = _as_mosquitto_user()
    if owner is not None:
        for path in [directory, *directory.rglob("*")]:
            os.chown(path, owner.pw_uid, owner.pw_gid)

    [init] = pod_spec(objects, "rel-maestro-mqtt")["initContainers"]
    script = init["args"][0].replace("/users/", f"{directory}/users/").replace("/mosquitto/auth/", f"{directory}/auth/")
    runner = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "mosquitto", "--"] if owner is not None else []
    env = {"PATH": f"{Path(_mosquitto_binary('mosquitto_passwd')).parent}:/usr/bin:/bin"}
    result = subprocess.run([*runner, "sh", "-c", script], capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "password file written for: maestro cluster1 cluster2" in result.stdout
    assert "$7$" in (directory / "auth" / "passwd").read_text()  # hashed (sha512-pbkdf2), no clear text

    server = MosquittoServer(binary=_mosquitto_binary("mosquitto"), directory=directory)
    conf = (
        files["mosquitto.conf"]
        .replace("listener 1883", f"listener {server.port} 127.0.0.1")
        .replace("/mosquitto/", f"{directory}/")
        .replace("log_dest stdout", f"log_dest file {directory}/mosquitto.log")
    )
    server.config_file.write_text(conf)
    server.start()
    return server


@pytest.fixture
def chart_broker(helm_bin: str) -> Iterator[ChartBroker]:
    """The development Mosquitto of a render with agents cluster1 and cluster2, running for real."""
    release, namespace = "rel", "hub"
    objects = render(helm_bin, release, namespace, *sets(*DEV))
    # NB: not under tmp_path, whose parents only root may enter; mosquitto runs as its own user when we are root.
    directory = Path(tempfile.mkdtemp(prefix="maestro-chart-mosquitto-"))
    server: MosquittoServer | None = None
    try:
        server = _start_rendered_mosquitto(objects, directory)
        yield ChartBroker(server=server, objects=objects, release=release, namespace=namespace)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def _next(broker: mqtt.Broker, *, timeout: float = 10.0) -> mqtt.Received:
    async with asyncio.timeout(timeout):
        return await anext(aiter(broker.messages()))


@contextlib.asynccontextmanager
async def _connected(config: mqtt_config.MQTTConfig, role: str, *subscriptions: str) -> AsyncIterator[mqtt.Broker]:
    broker = mqtt.Broker(config, client_id=f"chart-{role}-{uuid.uuid4().hex[:6]}", subscriptions=subscriptions)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.close()


async def test_mosquitto_acl_confines_each_agent(chart_broker: ChartBroker, helm_bin: str) -> None:
    hub_config = chart_broker.hub_config()
    c1_config = chart_broker.agent_config(helm_bin, "cluster1")
    c2_config = chart_broker.agent_config(helm_bin, "cluster2")
    spec = hub_config.topics.source_events
    c1_spec, c2_spec = c1_config.topics.source_events, c2_config.topics.source_events
    c1_status, c2_status = c1_config.topics.agent_events, c2_config.topics.agent_events
    assert hub_config.topics.agent_events.startswith("$share/statussubscribers/")

    # Credentials are required and checked.
    for config in (
        dataclasses.replace(c1_config, password="wrong"),
        dataclasses.replace(c1_config, username=None, password=None),
    ):
        with pytest.raises(ConnectError) as refused:
            async with _connected(config, "intruder"):
                pass
        assert refused.value.permanent

    async with (
        _connected(hub_config, "hub", hub_config.topics.agent_events) as hub,
        _connected(c1_config, "cluster1", c1_spec) as cluster1,
        _connected(c2_config, "cluster2", c2_spec) as cluster2,
    ):
        # cluster2 asks for cluster1's spec events: mosquitto's ACL grants the SUBSCRIBE but never delivers on
        # it (a broker that checks subscriptions would refuse it outright; either way nothing arrives).
        with contextlib.suppress(SubscribeError):
            await cluster2.subscribe(c1_spec)
        await (await hub.publish(spec.replace("+", "cluster1"), MQTTMessage(payload=b"spec for cluster1")))
        await (await hub.publish(spec.replace("+", "cluster2"), MQTTMessage(payload=b"spec for cluster2")))
        received = await _next(cluster1)
        assert (received.topic, received.message.payload) == (c1_spec, b"spec for cluster1")
        # NB: both were published in this order by one client; cluster2's first delivery is its own.
        received = await _next(cluster2)
        assert (received.topic, received.message.payload) == (c2_spec, b"spec for cluster2")

        # cluster2 cannot forge cluster1's status: the hub gets cluster2's own message first and only.
        with contextlib.suppress(BrokerError):
            await (await cluster2.publish(c1_status, MQTTMessage(payload=b"forged")))
        await (await cluster2.publish(c2_status, MQTTMessage(payload=b"status of cluster2")))
        received = await _next(hub)
        assert (received.topic, received.message.payload) == (c2_status, b"status of cluster2")
        await (await cluster1.publish(c1_status, MQTTMessage(payload=b"status of cluster1")))
        received = await _next(hub)
        assert (received.topic, received.message.payload) == (c1_status, b"status of cluster1")

        # An agent cannot publish spec events either (only the hub writes sourceevents).
        with contextlib.suppress(BrokerError):
            await (await cluster2.publish(c1_spec, MQTTMessage(payload=b"forged spec")))
        await (await hub.publish(spec.replace("+", "cluster1"), MQTTMessage(payload=b"second spec")))
        received = await _next(cluster1)
        assert received.message.payload == b"second spec"


async def test_rendered_hub_runs(chart_broker: ChartBroker, helm_bin: str, db_url: str, tmp_path: Path) -> None:
    """``maestro migration`` and ``maestro server`` as the pod runs them: the rendered args and environment (the
    database as five Secret fields, the client id from the pod name), the rendered broker config with the hub's
    generated password against the chart's Mosquitto. Only what cannot hold outside a pod is overridden, after
    the rendered arguments: the listen address and ports, and the config file's path.

    The session PostgreSQL trusts local connections, so PGPASSWORD is not checked here, but PGUSER is: without
    it every driver would log in as the OS user, a role that does not exist."""
    url = urlsplit(db_url)
    objects = render(
        helm_bin, "rel", "hub",
        *sets(
            *DEV[1:],
            f"database.host={url.hostname}", f"database.port={url.port}", f"database.user={url.username}",
            "database.password=unused-with-trust-auth", f"database.name={url.path.lstrip('/')}",
        ),
    )  # fmt: skip
    # The same broker users as the running mosquitto: this render generated other passwords.
    hub_config = chart_broker.write_hub_config(tmp_path / "config.yaml")
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO_ROOT)}

    migration = migration_container(objects)
    env = {**base_env, **container_env(migration, objects)}
    assert {"MAESTRO_DB_URL", "PGUSER", "PGPASSWORD"} <= env.keys()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", "migration", *container_args(migration, env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, cwd=tmp_path,
    )  # fmt: skip
    async with asyncio.timeout(60):
        output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    assert "the schema is up to date" in output.decode()

    hub = hub_container(objects)
    env = {**base_env, **container_env(hub, objects)}
    http, health, metrics, grpc = free_port(), free_port(), free_port(), free_port()
    args = [
        *container_args(hub, env),
        "--server-hostname=127.0.0.1",
        f"--http-server-bindport={http}",
        f"--health-check-server-bindport={health}",
        f"--metrics-server-bindport={metrics}",
        f"--grpc-server-bindport={grpc}",
        f"--mqtt-config-file={hub_config}",
    ]
    log = tmp_path / "hub.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.cli", "server", *args,
            stdout=out, stderr=asyncio.subprocess.STDOUT, env=env, cwd=tmp_path,
        )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{health}") as client:
            deadline = time.monotonic() + 60
            while True:
                assert process.returncode is None, f"maestro server exited:\n{log.read_text()}"
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/healthcheck")).status_code == 200:
                        break
                assert time.monotonic() < deadline, f"not ready in 60 s:\n{log.read_text()}"
                await asyncio.sleep(0.1)
        output_text = log.read_text()
        assert f"maestro-{POD}" in output_text  # the client id, from the pod name
        assert "status subscription $share/statussubscribers/sources/maestro/consumers/+/agentevents" in output_text
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                code = await process.wait()
        except TimeoutError:
            process.kill()
            code = await process.wait()
    assert code == 0, log.read_text()
