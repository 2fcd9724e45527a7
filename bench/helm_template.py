"""Benchmark: ``helm template`` wall time of both charts (issue 10's "Measure").

Renders each chart with its minimal values and with non-default ones (the development PostgreSQL and Mosquitto;
the agent's CRD, metrics Service and ServiceMonitor) ``--runs`` times and prints the median and the slowest run.
helm is the one on PATH, or the e2e suite's cached one (``~/.cache/maestro-e2e/tools-*/helm``), or ``--helm``.

    .venv/bin/python bench/helm_template.py
    .venv/bin/python bench/helm_template.py --runs 20 --helm /usr/local/bin/helm
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVER = ("database.url=postgresql://maestro:x@db:5432/maestro", "messageBroker.mqtt.host=broker", "auth.disabled=true")
CASES = {
    "maestro-server minimal": ("maestro-server", SERVER),
    "maestro-server development": (
        "maestro-server",
        ("postgresql.enabled=true", "mosquitto.enabled=true", "mosquitto.agents={cluster1,cluster2}", SERVER[2]),
    ),
    "maestro-agent minimal": ("maestro-agent", ("consumerName=cluster1",)),
    "maestro-agent with CRD and metrics": (
        "maestro-agent",
        ("consumerName=cluster1", "metrics.service.enabled=true", "metrics.serviceMonitor.enabled=true"),
    ),
}


def _helm(given: str | None) -> str:
    found = given or shutil.which("helm")
    if found is None:
        cached = sorted(Path.home().glob(".cache/maestro-e2e/tools-*/helm"))
        found = str(cached[-1]) if cached else None
    if found is None:
        raise SystemExit("no helm: put it on PATH or pass --helm")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--helm")
    args = parser.parse_args()
    helm = _helm(args.helm)
    version = subprocess.run([helm, "version", "--short"], capture_output=True, text=True, check=True).stdout.strip()
    print(f"helm {version}, {args.runs} runs each")
    print(f"{'case':<38} {'median s':>9} {'max s':>7} {'objects':>8}")
    for name, (chart, pairs) in CASES.items():
        argv = [helm, "template", "rel", str(REPO / "charts" / chart), "--include-crds"]
        argv += [arg for pair in pairs for arg in ("--set", pair)]
        times, objects = [], 0
        for _ in range(args.runs):
            start = time.perf_counter()
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            times.append(time.perf_counter() - start)
            objects = sum(1 for line in out.splitlines() if line.startswith("kind: "))
        print(f"{name:<38} {statistics.median(times):>9.3f} {max(times):>7.3f} {objects:>8}")


if __name__ == "__main__":
    main()
