"""Status feedback: JSONPath evaluation, value typing, WellKnownStatus and the StatusFeedbackSynced condition."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent import feedback

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app.kubernetes.io/name": "web"}},
    "spec": {
        "replicas": 3,
        "template": {
            "spec": {
                "containers": [
                    {"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}]},
                    {"name": "sidecar", "image": "envoy:1.30"},
                ]
            }
        },
    },
    "status": {
        "observedGeneration": 2,
        "replicas": 3,
        "readyReplicas": 2,
        "availableReplicas": 2,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"},
        ],
    },
}
CAP = 1024 * 1024


def json_paths(*paths: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"type": "JSONPaths", "jsonPaths": [{"name": name, "path": path} for name, path in paths]}]


def evaluate(obj: dict[str, Any] | None, rules: list[dict[str, Any]], **kw: Any) -> feedback.Feedback:
    return feedback.evaluate(
        obj,
        rules,
        group=kw.get("group", "apps"),
        kind=kw.get("kind", "Deployment"),
        max_json_raw_length=kw.get("cap", CAP),
    )


# JSONPath


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (".status.readyReplicas", [2]),
        ("$.status.readyReplicas", [2]),
        (".spec.template.spec.containers[0].image", ["nginx:1.27"]),
        (".spec.template.spec.containers[-1].name", ["sidecar"]),
        (".spec.template.spec.containers[*].name", ["app", "sidecar"]),
        (".spec.template.spec.containers[0:1].name", ["app"]),
        (".spec.template.spec.containers[0,1].image", ["nginx:1.27", "envoy:1.30"]),
        ('.status.conditions[?(@.type=="Available")].status', ["True"]),
        (".status.conditions[?(@.type=='Progressing')].reason", ["ProgressDeadlineExceeded"]),
        ('.status.conditions[?(@.status!="True")].type', ["Progressing"]),
        (".spec.template.spec.containers[?(@.ports)].name", ["app"]),
        (".metadata['name']", ["web"]),
        (".metadata['labels']['app\\.kubernetes\\.io/name']", ["web"]),
        (".metadata.labels.app\\.kubernetes\\.io/name", ["web"]),
        ("..containerPort", [80]),
        (".status.missing", []),
        (".nope.deeper[0].still", []),
        ('.spec.template.spec.containers[?(@.type=="x")].name', []),
    ],
)
def test_jsonpath_selects_values(path: str, expected: list[Any]) -> None:
    assert feedback.jsonpath(DEPLOYMENT, path) == expected


def test_quoted_key_with_dots_is_a_nested_path_as_in_kubectl() -> None:
    obj = {"a": {"b": 1}, "a.b": 2}
    assert feedback.jsonpath(obj, "['a.b']") == [1]
    assert feedback.jsonpath(obj, "['a\\.b']") == [2]


@pytest.mark.parametrize(
    ("items", "path", "expected"),
    [
        ([{"n": 3}, {"n": 5}], "[?(@.n==5)].n", [5]),
        ([{"n": 3}, {"n": 5}], "[?(@.n!=5)].n", [3]),
        ([{"n": 3}, {"n": 5}], "[?(@.n>3)].n", [5]),
        ([{"n": 3}, {"n": 5}], "[?(@.n<=3)].n", [3]),
        ([{"ok": True, "i": 1}, {"ok": False, "i": 2}], "[?(@.ok==true)].i", [1]),
        ([{"ok": True, "i": 1}, {"ok": False, "i": 2}], "[?(@.ok!=true)].i", [2]),
        ([{"x": 1.5}, {"x": 2.5}], "[?(@.x==2.5)].x", [2.5]),
        ([{"n": 1}, {}], "[?(@.n==1)].n", [1]),
    ],
)
def test_filters_compare_numbers_booleans_and_strings(items: list[Any], path: str, expected: list[Any]) -> None:
    assert feedback.jsonpath(items, path) == expected


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (".a[", "unterminated array"),
        (".a[x]", "invalid array index x"),
        (".a[?(@.b==1", "unterminated filter"),
        (".a[?(@.b==1)", "unclosed array expect ]"),
        (".a #", "unrecognized character in action: U\\+0023 '#'"),
        ('.a "b', "unterminated quoted string"),
        (".a....b", "invalid multiple recursive descent"),
        (".a}", "single expression"),
    ],
)
def test_malformed_paths_raise_value_error(path: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        feedback.jsonpath(DEPLOYMENT, path)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (".spec.template.spec.containers[5].image", "array index out of bounds: index 5, length 2"),
        (".metadata[0]", "map\\[string\\]interface {} is not array or slice"),
        (".status.conditions[?(@.type==1)].status", "incompatible types for comparison"),
        (".spec.template.spec.containers[?(@.ports==1)].name", "invalid type for comparison"),
        ("status.replicas", "unrecognized identifier status"),
    ],
)
def test_paths_that_cannot_apply_raise_eval_errors(path: str, message: str) -> None:
    with pytest.raises(feedback.JSONPathEvalError, match=message):
        feedback.jsonpath(DEPLOYMENT, path)


# Value typing and the StatusFeedbackSynced condition


def test_deployment_well_known_status() -> None:
    result = evaluate(DEPLOYMENT, [{"type": "WellKnownStatus"}])
    assert result.values == [
        {"name": "ReadyReplicas", "fieldValue": {"type": "Integer", "integer": 2}},
        {"name": "Replicas", "fieldValue": {"type": "Integer", "integer": 3}},
        {"name": "AvailableReplicas", "fieldValue": {"type": "Integer", "integer": 2}},
    ]
    assert result.synced == ("True", "StatusFeedbackSynced", "")


def test_well_known_status_of_job_pod_and_daemonset() -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]},
    }
    daemonset = {
        "apiVersion": "apps/v1",
        "status": {"numberReady": 1, "desiredNumberScheduled": 2, "numberAvailable": 1},
    }
    rules = [{"type": "WellKnownStatus"}]
    assert [(v["name"], v["fieldValue"]) for v in evaluate(job, rules, group="batch", kind="Job").values] == [
        ("JobComplete", {"type": "String", "string": "True"}),
        ("JobSucceeded", {"type": "Integer", "integer": 1}),
    ]
    assert [(v["name"], v["fieldValue"]) for v in evaluate(pod, rules, group="", kind="Pod").values] == [
        ("PodReady", {"type": "String", "string": "False"}),
        ("PodPhase", {"type": "String", "string": "Running"}),
    ]
    assert [v["name"] for v in evaluate(daemonset, rules, kind="DaemonSet").values] == [
        "NumberReady",
        "DesiredNumberScheduled",
        "NumberAvailable",
    ]


def test_fields_not_yet_reported_are_left_out_without_error() -> None:
    fresh = {**DEPLOYMENT, "status": {"replicas": 3}}
    result = evaluate(fresh, [{"type": "WellKnownStatus"}])
    assert [v["name"] for v in result.values] == ["Replicas"]
    assert result.synced == ("True", "StatusFeedbackSynced", "")


def test_well_known_status_of_an_unknown_kind_fails() -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "data": {}}
    result = evaluate(config_map, [{"type": "WellKnownStatus"}], group="", kind="ConfigMap")
    assert result.values == []
    assert result.synced == (
        "False",
        "StatusFeedbackSyncFailed",
        "Sync status feedback failed with error cannot find the wellknown statuses for resource with gvk "
        "/v1, Kind=ConfigMap",
    )


def test_well_known_status_is_keyed_by_version_too() -> None:
    old = {**DEPLOYMENT, "apiVersion": "apps/v1beta2"}
    synced = evaluate(old, [{"type": "WellKnownStatus"}]).synced
    assert synced is not None
    assert synced[1] == "StatusFeedbackSyncFailed"


def test_status_object_is_json_raw_that_decodes_back() -> None:
    result = evaluate(DEPLOYMENT, json_paths(("status", ".status")))
    [value] = result.values
    assert value["fieldValue"]["type"] == "JsonRaw"
    raw = value["fieldValue"]["jsonRaw"]
    assert json.loads(raw) == DEPLOYMENT["status"]
    assert raw.startswith('{"availableReplicas":2,"conditions":[{"reason":')  # Go: sorted keys, no spaces.


def test_several_matches_are_one_json_list_and_one_match_is_a_scalar() -> None:
    result = evaluate(
        DEPLOYMENT,
        json_paths(
            ("images", ".spec.template.spec.containers[*].image"),
            ("first", ".spec.template.spec.containers[0:1].image"),
        ),
    )
    assert result.values == [
        {"name": "images", "fieldValue": {"type": "JsonRaw", "jsonRaw": '["nginx:1.27","envoy:1.30"]'}},
        {"name": "first", "fieldValue": {"type": "String", "string": "nginx:1.27"}},
    ]


@pytest.mark.parametrize(
    ("value", "field_value"),
    [
        (True, {"type": "Boolean", "boolean": True}),
        (7, {"type": "Integer", "integer": 7}),
        ("x", {"type": "String", "string": "x"}),
        (1.5, {"type": "JsonRaw", "jsonRaw": "1.5"}),
        (2.0, {"type": "JsonRaw", "jsonRaw": "2"}),
        (1e-7, {"type": "JsonRaw", "jsonRaw": "1e-7"}),
        (1e21, {"type": "JsonRaw", "jsonRaw": "1e+21"}),
        ([1, "a", None], {"type": "JsonRaw", "jsonRaw": '[1,"a",null]'}),
        ({"b": "<&>", "a": {}}, {"type": "JsonRaw", "jsonRaw": '{"a":{},"b":"\\u003c\\u0026\\u003e"}'}),
    ],
)
def test_values_are_typed_as_ocm_types_them(value: Any, field_value: dict[str, Any]) -> None:
    result = evaluate({"apiVersion": "v1", "status": {"v": value}}, json_paths(("v", ".status.v")))
    assert result.values == [{"name": "v", "fieldValue": field_value}]


def test_missing_and_null_values_yield_nothing_and_no_error() -> None:
    obj = {"apiVersion": "apps/v1", "status": {"gone": None}}
    result = evaluate(obj, json_paths(("a", ".status.nothing"), ("b", ".status.gone"), ("c", ".spec.x[*]")))
    assert result.values == []
    assert result.synced == ("True", "StatusFeedbackSynced", "")


def test_json_raw_longer_than_the_cap_is_refused_but_other_values_are_kept() -> None:
    status = json.dumps(DEPLOYMENT["status"], separators=(",", ":"), sort_keys=True)
    rules = json_paths(("status", ".status"), ("ready", ".status.readyReplicas"))
    fits = evaluate(DEPLOYMENT, rules, cap=len(status))
    assert [v["name"] for v in fits.values] == ["status", "ready"]
    too_long = evaluate(DEPLOYMENT, rules, cap=len(status) - 1)
    assert too_long.values == [{"name": "ready", "fieldValue": {"type": "Integer", "integer": 2}}]
    assert too_long.synced == (
        "False",
        "StatusFeedbackSyncFailed",
        "Sync status feedback failed with error the length of returned json raw string for name status is larger "
        f"than the maximum length {len(status) - 1}",
    )


def test_path_errors_are_reported_by_name_and_aggregated() -> None:
    rules = [
        *json_paths(("bad", ".a["), ("oob", ".spec.template.spec.containers[9].image"), ("ok", ".spec.replicas")),
        {"type": "JSONPaths", "jsonPaths": [{"name": "v1beta1", "path": ".spec", "version": "v1beta1"}]},
    ]
    result = evaluate(DEPLOYMENT, rules)
    assert result.values == [{"name": "ok", "fieldValue": {"type": "Integer", "integer": 3}}]
    assert result.synced == (
        "False",
        "StatusFeedbackSyncFailed",
        "Sync status feedback failed with error [failed to parse json path .a[ of bad with error: unterminated array, "
        "failed to find value for oob with error: array index out of bounds: index 9, length 2, "
        "version set in the path v1beta1 is not matched for the related resource]",
    )


def test_identical_errors_are_reported_once() -> None:
    rules = [{"type": "WellKnownStatus"}, {"type": "WellKnownStatus"}]
    assert evaluate({"apiVersion": "v1"}, rules, group="", kind="Secret").synced == (
        "False",
        "StatusFeedbackSyncFailed",
        "Sync status feedback failed with error "
        "cannot find the wellknown statuses for resource with gvk /v1, Kind=Secret",
    )


def test_a_matching_path_version_is_read() -> None:
    rules = [{"type": "JSONPaths", "jsonPaths": [{"name": "r", "path": ".spec.replicas", "version": "v1"}]}]
    assert evaluate(DEPLOYMENT, rules).values == [{"name": "r", "fieldValue": {"type": "Integer", "integer": 3}}]


def test_no_rules_is_no_status_feedback_synced() -> None:
    assert evaluate(DEPLOYMENT, []) == feedback.Feedback(values=[], synced=("True", "NoStatusFeedbackSynced", ""))


def test_no_object_leaves_the_previous_condition_alone() -> None:
    assert evaluate(None, [{"type": "WellKnownStatus"}]) == feedback.Feedback(values=[], synced=None)
