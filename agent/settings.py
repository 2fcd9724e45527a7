"""The agent's settings, from flags and ``MAESTRO_<FLAG>`` environment variables (see :mod:`agent.cli`)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class AgentSettings:
    consumer: str
    """The consumer (cluster) name: topics, ``clustername``, the works' owner."""
    workload_source_config: str
    """The broker config file (upstream's MQTT YAML)."""
    namespace: str
    """The agent's own namespace: the works' payload Secrets live there."""
    kubeconfig: str | None = None
    """``None``: the in-cluster service account."""
    client_id: str = ""
    """The CloudEvents source of what the agent sends; the MQTT client id is ``<client_id>-client``."""
    hub_source: str | None = None
    """Refuse spec events from any other source (``None``: the source named by the topics, if any)."""
    status_sync_interval: float = 10.0
    max_json_raw_length: int = 1024 * 1024
    eviction_grace_period: float = 3600.0
    kube_api_qps: float = 50.0
    kube_api_burst: int = 100
    workers: int = 16
    install_crd: bool = False
    healthz_host: str = "127.0.0.1"
    healthz_port: int = 8083
