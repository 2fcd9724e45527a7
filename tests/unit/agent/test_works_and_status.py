"""AppliedWork shapes: the payload Secret round trip, the spec the CR shows, and the status the hub gets."""

from __future__ import annotations

import json

import pytest

from agent import status, works
from protocol import statushash

BUNDLE = {
    "manifests": [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": "apps"},
            "data": {"pw": "c2VjcmV0"},
        },
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "apps"}},
    ],
    "manifestConfigs": [
        {
            "resourceIdentifier": {"group": "apps", "resource": "deployments", "name": "web", "namespace": "apps"},
            "updateStrategy": {"type": "Update"},
        }
    ],
    "deleteOption": {"propagationPolicy": "Orphan"},
}


def test_payload_round_trip_and_hash() -> None:
    secret = {"data": {works.PAYLOAD_KEY: works.encode_payload(BUNDLE)}}
    assert works.decode_payload(secret) == BUNDLE
    assert works.bundle_hash(works.decode_payload(secret)) == works.bundle_hash(BUNDLE)


@pytest.mark.parametrize("secret", [{}, {"data": {works.PAYLOAD_KEY: "bm90IGd6aXA="}}])
def test_a_payload_that_is_not_ours_is_a_value_error(secret: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=works.PAYLOAD_KEY):
        works.decode_payload(secret)


def test_spec_shows_identities_and_strategies_but_no_manifest_content() -> None:
    spec = works.spec_for(
        resource_id="rid",
        consumer="c1",
        source="maestro",
        hub="h",
        version=3,
        metadata='{"name":"rid"}',
        bundle=BUNDLE,
        namespace="agent-ns",
    )
    shown = [(m["ordinal"], m["group"], m["version"], m["kind"], m["namespace"], m["name"]) for m in spec["manifests"]]
    assert shown == [(0, "", "v1", "Secret", "apps", "db"), (1, "apps", "v1", "Deployment", "apps", "web")]
    assert [m["updateStrategy"] for m in spec["manifests"]] == ["ServerSideApply", "Update"]
    assert spec["payload"] == {
        "secretName": "work-rid",
        "secretNamespace": "agent-ns",
        "hash": works.bundle_hash(BUNDLE),
    }
    assert "c2VjcmV0" not in json.dumps(spec)
    assert spec["deleteOption"] == {"propagationPolicy": "Orphan"}


def test_config_for_matches_the_resource_once_known() -> None:
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web", "namespace": "apps"}}
    configs = [{"resourceIdentifier": {"group": "", "resource": "secrets", "name": "web", "namespace": "apps"}}]
    assert works.config_for(configmap, configs) == configs[0]
    assert works.config_for(configmap, configs, resource="configmaps") == {}
    assert works.config_for(configmap, configs, resource="secrets") == configs[0]


def test_condition_keeps_its_transition_time_while_the_status_holds() -> None:
    first = status.condition([], "Applied", "True", "R", "m", generation=1, when="2026-01-01T00:00:00Z")
    same = status.condition([first], "Applied", "True", "R2", "m2", generation=2, when="2026-01-02T00:00:00Z")
    flipped = status.condition([same], "Applied", "False", "R3", "m3", generation=2, when="2026-01-03T00:00:00Z")
    assert same["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert flipped["lastTransitionTime"] == "2026-01-03T00:00:00Z"


def test_bundle_status_is_a_function_of_the_appliedwork_status() -> None:
    cond = {
        "type": "Applied",
        "status": "True",
        "reason": "R",
        "message": "",
        "lastTransitionTime": "t",
        "observedGeneration": 2,
    }
    aw_status = {
        "observedVersion": 2,
        "conditions": [cond],
        "manifests": [
            {
                "ordinal": 0, "group": "apps", "version": "v1", "kind": "Deployment", "resource": "deployments",
                "namespace": "apps", "name": "web", "uid": "u", "hash": "h", "observed": "g:1", "written": True,
                "conditions": [cond], "feedback": [{"name": "x", "fieldValue": {"type": "Integer", "integer": 1}}],
            }
        ],
    }  # fmt: skip
    wire = status.bundle_status(aw_status)
    assert wire == {
        "conditions": [cond],
        "resourceStatus": [
            {
                "resourceMeta": {"ordinal": 0, "group": "apps", "version": "v1", "kind": "Deployment",
                                 "resource": "deployments", "name": "web", "namespace": "apps"},
                "statusFeedback": {"values": [{"name": "x", "fieldValue": {"type": "Integer", "integer": 1}}]},
                "conditions": [cond],
            }
        ],
    }  # fmt: skip
    assert statushash.status_hash(wire) == statushash.status_hash(
        status.bundle_status(json.loads(json.dumps(aw_status)))
    )


def test_deleted_status_is_upstreams() -> None:
    deleted = status.deleted_status(4, "cluster1")
    (cond,) = deleted["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Deleted", "True", "ManifestsDeleted")
    assert cond["message"] == "The manifests are deleted from the cluster cluster1"
    assert deleted["resourceStatus"] == []


def test_crd_manifest_is_the_appliedwork_crd() -> None:
    crd = works.crd_manifest()
    assert crd["metadata"]["name"] == works.CRD_NAME
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"]["shortNames"] == ["aw"]
    (version,) = crd["spec"]["versions"]
    assert version["name"] == works.VERSION
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Version",
        "Applied",
        "Available",
        "Manifests",
        "Age",
    ]
