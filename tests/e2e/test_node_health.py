"""The fake kwok Node stays Ready, so Deployments stay Available for as long as a test runs.

kwok renews the Node's Lease in ``kube-node-lease`` (``--node-lease-duration-seconds``); without it KCM's node
lifecycle controller marks the Node NotReady about every 55 s and every pod loses Ready for good. This is a
behaviour test: a Deployment must be Available at every check over three minutes.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

KubectlRunner = Callable[..., subprocess.CompletedProcess[str]]

WATCH_SECONDS = 180.0
INTERVAL = 5.0


def _deployment(name: str, namespace: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
            },
        },
    }


def _availability(kubectl: KubectlRunner, namespace: str, name: str, replicas: int) -> str | None:
    """None if the Deployment is fully Available, else what is wrong."""
    deployment = json.loads(kubectl("get", "deployment", name, "-n", namespace, "-o", "json").stdout)
    status: dict[str, Any] = deployment.get("status", {})
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    available = conditions.get("Available", {})
    if status.get("availableReplicas") == replicas and available.get("status") == "True":
        return None
    return (
        f"availableReplicas={status.get('availableReplicas')} (want {replicas}), "
        f"Available={available.get('status')} ({available.get('reason')}: {available.get('message')})"
    )


def _diagnostics(kubectl: KubectlRunner, namespace: str) -> str:
    """Nodes, node leases, node events and the test's pods, for a failure message (never raises)."""
    parts = []
    for title, args in (
        ("nodes", ("get", "nodes", "-o", "wide")),
        ("node leases", ("get", "leases", "-n", "kube-node-lease")),
        ("node events", ("get", "events", "-A", "--field-selector", "involvedObject.kind=Node")),
        ("pods", ("get", "pods", "-n", namespace, "-o", "wide")),
    ):
        result = kubectl(*args, check=False)
        parts.append(f"--- {title} ---\n{result.stdout}{result.stderr}")
    return "\n".join(parts)


@pytest.mark.timeout(WATCH_SECONDS + 240)
def test_deployment_stays_available(kubectl: KubectlRunner, namespace: str) -> None:
    name, replicas = "steady", 2
    kubectl("apply", "-f", "-", input=json.dumps(_deployment(name, namespace, replicas)))

    deadline = time.monotonic() + 60
    while (problem := _availability(kubectl, namespace, name, replicas)) is not None:
        if time.monotonic() > deadline:
            pytest.fail(f"Deployment never became Available: {problem}\n{_diagnostics(kubectl, namespace)}")
        time.sleep(0.5)

    started = time.monotonic()
    checks = 0
    while True:
        checks += 1
        problem = _availability(kubectl, namespace, name, replicas)
        if problem is not None:
            elapsed = time.monotonic() - started
            pytest.fail(
                f"Deployment lost availability {elapsed:.0f}s after it became Available (check {checks}): "
                f"{problem}\n{_diagnostics(kubectl, namespace)}"
            )
        if time.monotonic() - started >= WATCH_SECONDS:
            break
        time.sleep(INTERVAL)
    assert checks >= WATCH_SECONDS // INTERVAL
