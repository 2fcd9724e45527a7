"""``maestro mqtt``'s pure parts: the ACL, the topics watched, one line per CloudEvent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from client import event_lines, mqtt_acl, mqtt_watch
from protocol import cloudevents_mqtt, events, mqtt_config, types
from protocol.errors import ProtocolError

SPEC = types.manifestbundle_type("spec", types.CREATE_REQUEST)
STATUS = types.manifestbundle_type("status", types.UPDATE_REQUEST)
WHEN = datetime(2026, 11, 24, 11, 35, 8, 557000, tzinfo=UTC)
RID = "3f28c601-5028-47f4-9264-5cc43f2f27fb"


def manifest(kind: str, name: str, namespace: str | None = "default") -> dict[str, object]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "v1", "kind": kind, "metadata": meta}


def test_acl_confines_each_agent_to_its_own_topics() -> None:
    text = mqtt_acl.render(["cluster1", "cluster2"], source="maestro", hub_user="hub")
    rules = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert rules == [
        "user hub",
        "topic readwrite sources/maestro/consumers/+/sourceevents",
        "topic readwrite sources/maestro/consumers/+/agentevents",
        "user cluster1-agent",
        "topic read sources/maestro/consumers/cluster1/sourceevents",
        "topic write sources/maestro/consumers/cluster1/agentevents",
        "user cluster2-agent",
        "topic read sources/maestro/consumers/cluster2/sourceevents",
        "topic write sources/maestro/consumers/cluster2/agentevents",
    ]
    assert "#   mosquitto_passwd -c -b /etc/mosquitto/passwd hub 'HUB-PASSWORD'" in text
    assert "#   mosquitto_passwd -b /etc/mosquitto/passwd cluster2-agent 'CLUSTER2-PASSWORD'" in text
    assert "#   allow_anonymous false" in text


@pytest.mark.parametrize("bad", ["+", "Cluster1", "a/b", "#"])
def test_acl_refuses_names_no_topic_may_hold(bad: str) -> None:
    with pytest.raises(ProtocolError):
        mqtt_acl.render([bad])


def test_watched_topics() -> None:
    assert mqtt_watch.subscriptions("maestro", "cluster1") == [
        "sources/maestro/consumers/cluster1/sourceevents",
        "sources/maestro/consumers/cluster1/agentevents",
    ]
    assert mqtt_watch.subscriptions("src", None) == [
        "sources/src/consumers/+/sourceevents",
        "sources/src/consumers/+/agentevents",
    ]
    config = mqtt_config.from_mapping(
        {
            "brokerHost": "h:1883",
            "topics": {
                "sourceEvents": "sources/hub1/consumers/+/sourceevents",
                "agentEvents": "$share/g/sources/hub1/consumers/+/agentevents",
            },
        }
    )
    assert mqtt_watch.source_of(config) == "hub1"


def spec_event(manifests: list[dict[str, object]], **extensions: object) -> object:
    return events.make_event(
        type=SPEC,
        source="maestro",
        data={"manifests": manifests},
        extensions={"resourceid": RID, "resourceversion": 2, "clustername": "cluster1", **extensions},
        time=WHEN,
    )


def test_a_spec_line() -> None:
    event = spec_event([manifest("Deployment", "nginx"), manifest("Namespace", "prod", None)])
    line = event_lines.line("sources/maestro/consumers/cluster1/sourceevents", event)  # type: ignore[arg-type]
    assert line.split("  ")[0] == "2026-11-24T11:35:08.557Z"
    assert line.split() == [
        "2026-11-24T11:35:08.557Z", "cluster1", "sourceevents", "spec.create_request", RID, "v2", "seq=-",
        "2", "manifests:", "Deployment", "default/nginx,", "Namespace", "prod",
    ]  # fmt: skip


def test_long_manifest_lists_are_cut() -> None:
    items = [manifest("ConfigMap", f"c{i}") for i in range(5)]
    assert event_lines.manifests(items) == (
        "5 manifests: ConfigMap default/c0, ConfigMap default/c1, ConfigMap default/c2, … +2 more"
    )


def test_a_delete_line() -> None:
    event = spec_event([manifest("Deployment", "nginx")], deletiontimestamp=WHEN)
    assert event_lines.summary(event) == "delete (1 manifest: Deployment default/nginx)"  # type: ignore[arg-type]


def test_status_lines_read_the_same_in_both_content_modes() -> None:
    data = {
        "conditions": [{"type": "Applied", "status": "True"}, {"type": "Available", "status": "True"}],
        "resourceStatus": [],
    }
    event = events.make_event(
        type=STATUS,
        source="cluster1-work-agent",
        data=data,
        extensions={"resourceid": RID, "resourceversion": 1, "sequenceid": "1864", "originalsource": "maestro"},
        time=WHEN,
    )
    topic = "sources/maestro/consumers/cluster1/agentevents"
    lines = {
        event_lines.line(topic, cloudevents_mqtt.decode(cloudevents_mqtt.encode(event, binary=binary)))
        for binary in (True, False)
    }
    assert len(lines) == 1
    assert lines.pop().endswith(f"{RID}  v1  seq=1864  Applied=True Available=True")


def test_a_failing_status_names_the_manifest_and_its_message() -> None:
    data = {
        "conditions": [{"type": "Applied", "status": "False", "message": "1 of 1 failed"}],
        "resourceStatus": [
            {
                "resourceMeta": {"kind": "Deployment", "name": "nginx", "namespace": "default"},
                "conditions": [{"type": "Applied", "status": "False", "message": "spec.replicas: Invalid value"}],
            }
        ],
    }
    event = events.make_event(type=STATUS, source="a", data=data, extensions={"resourceid": RID})
    assert event_lines.summary(event) == (
        "Applied=False (1 of 1 failed); Deployment default/nginx: spec.replicas: Invalid value"
    )


def test_resync_lines() -> None:
    request = events.make_event(
        type=types.manifestbundle_type("spec", types.RESYNC_REQUEST),
        source="a",
        data={"resourceVersions": [{"resourceID": RID, "resourceVersion": 1}]},
    )
    assert event_lines.summary(request) == "resync: the agent holds 1 resource"
    hashes = events.make_event(
        type=types.manifestbundle_type("status", types.RESYNC_REQUEST), source="maestro", data={"statusHashes": []}
    )
    assert event_lines.summary(hashes) == "resync: the source holds 0 status hashes"


def test_short_types_and_unreadable_messages() -> None:
    assert event_lines.short_type(SPEC) == "spec.create_request"
    assert event_lines.short_type(types.HEARTBEAT_TYPE) == "heartbeat"
    assert event_lines.short_type("something.else") == "something.else"
    line = event_lines.unreadable("sources/m/consumers/c1/agentevents", "payload is not valid JSON", now=WHEN)
    assert line.split() == ["2026-11-24T11:35:08.557Z", "c1", "agentevents", "unreadable", "payload", "is", "not",
                            "valid", "JSON"]  # fmt: skip
