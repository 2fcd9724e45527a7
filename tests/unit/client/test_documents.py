"""``apply -f``: what a file may hold and what the CLI sends for it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from client import documents
from client.errors import CLIError

NGINX = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx", "namespace": "default"}}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nginx", "namespace": "default"}}


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "f"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "text",
    [
        yaml.safe_dump_all([NGINX, SERVICE]),
        json.dumps([NGINX, SERVICE]),
        yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [NGINX, SERVICE]}),
        "---\n" + yaml.safe_dump(NGINX) + "---\n---\n" + yaml.safe_dump([SERVICE]),
    ],
    ids=["yaml-documents", "json-array", "kind-list", "empty-documents-and-nested-list"],
)
def test_lists_of_manifests_flatten(tmp_path: Path, text: str) -> None:
    assert documents.load(write(tmp_path, text)) == [NGINX, SERVICE]


def test_json_with_a_yaml_fallback(tmp_path: Path) -> None:
    assert documents.load(write(tmp_path, json.dumps(NGINX))) == [NGINX]
    assert documents.load(write(tmp_path, "{kind: ConfigMap}")) == [{"kind": "ConfigMap"}]


def test_unreadable_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(CLIError, match="cannot read"):
        documents.load(str(tmp_path / "missing.yaml"))
    with pytest.raises(CLIError, match="neither JSON nor YAML") as info:
        documents.load(write(tmp_path, "a: [b\nc: d\n"))
    assert "\n" not in info.value.message
    with pytest.raises(CLIError, match="no documents"):
        documents.load(write(tmp_path, "---\n"))


def test_one_manifest_is_a_bundle_named_after_consumer_and_object() -> None:
    (bundle,) = documents.bundles([NGINX], consumer="cluster1", name=None, where="f")
    assert bundle == documents.Bundle(name="cluster1-deployment-default-nginx", consumer="cluster1", manifests=[NGINX])


def test_several_manifests_make_one_bundle_that_needs_a_name() -> None:
    with pytest.raises(CLIError, match="a bundle of 2 manifests needs a name"):
        documents.bundles([NGINX, SERVICE], consumer="c1", name=None, where="f")
    (bundle,) = documents.bundles([NGINX, SERVICE], consumer="c1", name="web", where="f")
    assert bundle.name == "web"
    assert bundle.manifests == [NGINX, SERVICE]


def test_bundle_documents_as_the_rest_api_prints_them() -> None:
    printed: dict[str, Any] = {
        "id": "3f28c601-5028-47f4-9264-5cc43f2f27fb",
        "kind": "ResourceBundle",
        "name": "web",
        "consumer_name": "c1",
        "version": 3,
        "metadata": {"name": "web", "labels": {"app": "web"}, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "manifests": [NGINX],
        "manifest_configs": [{"resourceIdentifier": {"name": "nginx"}}],
        "delete_option": {"propagationPolicy": "Orphan"},
        "status": {"ObservedVersion": 3},
    }
    (bundle,) = documents.bundles([printed], consumer=None, name=None, where="f")
    assert bundle == documents.Bundle(
        name="web",
        consumer="c1",
        manifests=[NGINX],
        manifest_configs=[{"resourceIdentifier": {"name": "nginx"}}],
        delete_option={"propagationPolicy": "Orphan"},
        metadata={"labels": {"app": "web"}},
    )


def test_a_manifestwork_is_a_bundle_for_the_consumer_of_its_namespace() -> None:
    work = {
        "apiVersion": "work.open-cluster-management.io/v1",
        "kind": "ManifestWork",
        "metadata": {"name": "web", "namespace": "cluster1"},
        "spec": {"workload": {"manifests": [NGINX]}, "manifestConfigs": [{"x": 1}], "deleteOption": {"a": "b"}},
    }
    (bundle,) = documents.bundles([work], consumer=None, name=None, where="f")
    assert (bundle.name, bundle.consumer, bundle.manifests) == ("web", "cluster1", [NGINX])
    assert bundle.manifest_configs == [{"x": 1}]
    assert bundle.delete_option == {"a": "b"}
    with pytest.raises(CLIError, match="targets consumer 'cluster1', not --consumer 'cluster2'"):
        documents.bundles([work], consumer="cluster2", name=None, where="f")


def test_every_problem_of_a_file_in_one_line() -> None:
    docs = [{"kind": "ConfigMap"}, "text", {"manifest": NGINX}]
    with pytest.raises(CLIError) as info:
        documents.bundles(docs, consumer="c", name=None, where="f")
    message = info.value.message
    assert "document 1 is not a Kubernetes object: no apiVersion, metadata.name" in message
    assert "document 2 is a str" in message
    assert "document 3 is a single resource: use maestro resource apply" in message


def test_bundles_and_manifests_do_not_mix() -> None:
    with pytest.raises(CLIError, match="mixes bundle documents and bare manifests"):
        documents.bundles([{"name": "b", "manifests": [NGINX]}, SERVICE], consumer="c", name=None, where="f")


def test_resources_one_per_manifest_or_resource_document() -> None:
    doc = {"consumer_name": "c1", "manifest": SERVICE, "update_strategy": {"type": "Update"}}
    found = documents.resources([NGINX, doc], consumer="c1", where="f")
    assert found == [
        documents.Resource(consumer="c1", manifest=NGINX),
        documents.Resource(consumer="c1", manifest=SERVICE, update_strategy={"type": "Update"}),
    ]
    with pytest.raises(CLIError, match="is a bundle: use maestro resourcebundle apply"):
        documents.resources([{"manifests": [NGINX]}], consumer="c1", where="f")
    with pytest.raises(CLIError, match="give --consumer"):
        documents.resources([NGINX], consumer=None, where="f")


def test_identity_and_default_names() -> None:
    assert documents.identity({**NGINX, "spec": {"replicas": 3}}) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default"},
    }
    crd = {"apiVersion": "x/v1", "kind": "Weird_Kind", "metadata": {"name": "A.B"}}
    assert documents.default_bundle_name("c1", crd) == "c1-weird-kind-a.b"
