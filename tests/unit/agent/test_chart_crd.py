"""The Helm chart ships the agent's own AppliedWork CRD: ``charts/maestro-agent/crds/`` must not drift from
``agent/manifests/`` (the agent installs the latter with ``--install-crd``, Helm the former on first install)."""

from __future__ import annotations

from pathlib import Path

import yaml

from agent import works

REPO_ROOT = Path(__file__).resolve().parents[3]
CHART_CRD = REPO_ROOT / "charts" / "maestro-agent" / "crds" / "appliedworks.crd.yaml"


def test_the_chart_ships_the_agents_crd() -> None:
    shipped = yaml.safe_load(CHART_CRD.read_text())
    assert shipped == works.crd_manifest()
    assert shipped["metadata"]["name"] == works.CRD_NAME


def test_the_chart_crd_is_one_document() -> None:
    assert len([doc for doc in yaml.safe_load_all(CHART_CRD.read_text()) if doc]) == 1
