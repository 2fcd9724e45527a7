"""``maestro agent``: the agent's command, found by ``maestro`` through the ``maestro.commands`` entry point
(so the hub's CLI never imports the agent package).

Flags carry upstream's names where upstream has them; each can also be given as ``MAESTRO_<FLAG>`` in the
environment (``--kube-api-qps`` → ``MAESTRO_KUBE_API_QPS``). ``--simulate`` runs the protocol-level simulated
agent instead (no Kubernetes).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

from agent.settings import AgentSettings

EXAMPLES = """\
examples:
  maestro agent --consumer-name cluster1 --workload-source-config mqtt.yaml --install-crd
  maestro agent --consumer-name cluster1 --mqtt-config-file /secrets/mqtt/config.yaml   # in a pod
  maestro agent --simulate --consumer-name cluster1 --mqtt-config mqtt.yaml            # no Kubernetes
"""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration(text: str) -> float:
    """``10s``, ``5m``, ``1h``, ``250ms`` or plain seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 10s, 5m, 1h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _env(flag: str, default: str | None = None) -> str | None:
    return os.environ.get("MAESTRO_" + flag.lstrip("-").replace("-", "_").upper(), default)


def _default_namespace() -> str:
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    if os.path.exists(path):
        with open(path) as f:
            return f.read().strip()
    return os.environ.get("POD_NAMESPACE", "maestro-agent")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="maestro agent",
        description="Run the work agent of one cluster: apply the hub's works as AppliedWorks and report status.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--consumer-name", default=_env("--consumer-name"), help="this cluster's consumer name (required)")
    p.add_argument(
        "--workload-source-config",
        "--mqtt-config-file",
        dest="workload_source_config",
        default=_env("--workload-source-config") or _env("--mqtt-config-file"),
        help="broker config file in upstream's MQTT format (required)",
    )
    p.add_argument(
        "--workload-source-driver",
        default=_env("--workload-source-driver", "mqtt"),
        choices=["mqtt"],
        help="transport to the hub (mqtt)",
    )
    p.add_argument(
        "--kubeconfig",
        default=_env("--kubeconfig"),
        help="kubeconfig file (default: in a pod its service account, else $KUBECONFIG or ~/.kube/config)",
    )
    p.add_argument(
        "--agent-namespace",
        default=_env("--agent-namespace") or _default_namespace(),
        help="namespace for the works' payload Secrets (default: the pod's namespace, else maestro-agent)",
    )
    p.add_argument(
        "--cloudevents-client-id",
        default=_env("--cloudevents-client-id"),
        help="CloudEvents source of this agent (default: <consumer>-work-agent); MQTT client id <id>-client",
    )
    p.add_argument(
        "--source-id",
        default=_env("--source-id"),
        help="accept spec events only from this hub source id (default: the source its topics name)",
    )
    p.add_argument(
        "--status-sync-interval",
        type=duration,
        default=duration(_env("--status-sync-interval", "10s") or "10s"),
        help="how often every work's status is re-read (default 10s; watched objects report at once)",
    )
    p.add_argument(
        "--max-json-raw-length",
        type=int,
        default=int(_env("--max-json-raw-length", str(1024 * 1024)) or 0),
        help="largest JsonRaw status feedback value in bytes (default 1 MiB)",
    )
    p.add_argument(
        "--appliedwork-eviction-grace-period",
        type=duration,
        default=duration(_env("--appliedwork-eviction-grace-period", "60m") or "60m"),
        help="how long a work no hub claims is kept before it is evicted (default 60m)",
    )
    p.add_argument("--kube-api-qps", type=float, default=float(_env("--kube-api-qps", "50") or 50))
    p.add_argument("--kube-api-burst", type=int, default=int(_env("--kube-api-burst", "100") or 100))
    p.add_argument("--workers", type=int, default=int(_env("--workers", "16") or 16), help="works reconciled at once")
    p.add_argument(
        "--install-crd",
        action="store_true",
        default=(_env("--install-crd", "") or "").lower() in ("1", "true", "yes"),
        help="install or update the AppliedWork CRD at start (else it must be installed, e.g. by the Helm chart)",
    )
    p.add_argument("--healthz-host", default=_env("--healthz-host", "127.0.0.1"))
    p.add_argument(
        "--healthz-bindport",
        type=int,
        default=int(_env("--healthz-bindport", "8083") or 8083),
        help="/healthz, /metrics",
    )
    p.add_argument("--log-level", default=_env("--log-level", "info"), choices=["debug", "info", "warning", "error"])
    return p


def settings_from(args: argparse.Namespace, p: argparse.ArgumentParser) -> AgentSettings:
    if not args.consumer_name:
        p.error("--consumer-name is required")
    if not args.workload_source_config:
        p.error("--workload-source-config (or --mqtt-config-file) is required")
    return AgentSettings(
        consumer=args.consumer_name,
        workload_source_config=args.workload_source_config,
        namespace=args.agent_namespace,
        kubeconfig=args.kubeconfig,
        client_id=args.cloudevents_client_id or f"{args.consumer_name}-work-agent",
        hub_source=args.source_id,
        status_sync_interval=args.status_sync_interval,
        max_json_raw_length=args.max_json_raw_length,
        eviction_grace_period=args.appliedwork_eviction_grace_period,
        kube_api_qps=args.kube_api_qps,
        kube_api_burst=args.kube_api_burst,
        workers=args.workers,
        install_crd=args.install_crd,
        healthz_host=args.healthz_host,
        healthz_port=args.healthz_bindport,
    )


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if "--simulate" in args:
        args.remove("--simulate")
        from agent import simulator_cli

        return simulator_cli.main(args)
    p = parser()
    parsed = p.parse_args(args)
    settings = settings_from(parsed, p)
    from agent import main as agent_main  # NB: imports kopf; --help stays fast without it.

    return agent_main.run(settings, log_level=parsed.log_level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
