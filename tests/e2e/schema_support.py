"""Offline validation of rendered chart objects against the Kubernetes OpenAPI schema of the e2e cluster's version
(the PyPI package ``kubernetes-validate``, strict: an unknown field is an error, as ``kubectl --validate=strict``).

The version is the one ``build-control-plane.sh`` builds, so the schema and the cluster of the server-side
dry-runs move together.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate

BUILD_SCRIPT = Path(__file__).resolve().parent / "build-control-plane.sh"
NO_SCHEMA = {("monitoring.coreos.com/v1", "ServiceMonitor")}
"""Kinds from CRDs that are not on the cluster (prometheus-operator's); the only objects not validated."""


def cluster_version() -> str:
    match = re.search(r"^K8S_VERSION=v(\d+\.\d+\.\d+)$", BUILD_SCRIPT.read_text(), re.MULTILINE)
    assert match, f"no K8S_VERSION in {BUILD_SCRIPT}"
    return match.group(1)


def schema_errors(objects: list[dict[str, Any]], version: str | None = None) -> list[str]:
    """One line per object that does not match its kind's schema (or has no schema and is not in NO_SCHEMA)."""
    version = version or cluster_version()
    errors = []
    for obj in objects:
        kind = (obj.get("apiVersion", ""), obj.get("kind", ""))
        where = f"{kind[1]} {obj.get('metadata', {}).get('name', '?')}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError as exc:
            if kind not in NO_SCHEMA:
                errors.append(f"{where}: {exc.message}")
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{where}: {path}: {exc.message}")
    return errors
