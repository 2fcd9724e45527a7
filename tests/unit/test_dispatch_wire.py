"""Rows to spec events, status decoding and the dispatcher's round robin, without I/O."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from protocol import cloudevents_mqtt, events, payloads, sequence, statushash, types
from server.dispatch import ingest, publisher, wire
from server.services.status import Rejected
from server.settings import Settings
from server.store.rows import ResourceRow

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def row(**overrides: Any) -> ResourceRow:
    base = ResourceRow(
        id="r1",
        name="r1",
        source="maestro",
        consumer_name="c1",
        type="Bundle",
        version=1,
        payload={
            "metadata": {"name": "custom", "labels": {"a": "b"}},
            "data": {"manifests": [{"kind": "ConfigMap"}], "deleteOption": {"propagationPolicy": "Foreground"}},
        },
        status=None,
        created_at=NOW,
        updated_at=NOW,
        deleted_at=None,
    )
    return dataclasses.replace(base, **overrides)


@pytest.mark.parametrize(
    ("version", "deleted_at", "resync", "action"),
    [
        (1, None, False, "create_request"),
        (3, None, False, "update_request"),
        (1, NOW, False, "delete_request"),
        (3, NOW, False, "delete_request"),
        (3, None, True, "resync_response"),
        (3, NOW, True, "resync_response"),
    ],
)
def test_spec_event_types(version: int, deleted_at: datetime | None, resync: bool, action: str) -> None:
    event = wire.spec_event(row(version=version, deleted_at=deleted_at), source="maestro", resync=resync)
    assert event.get_type() == types.manifestbundle_type("spec", action)
    assert event.get_extension("resourceversion") == version
    assert (event.get_extension("deletiontimestamp") is not None) is (deleted_at is not None)


def test_spec_event_carries_the_bundle_and_the_work_object_meta() -> None:
    event = wire.spec_event(row(version=3), source="src")
    assert event.get_source() == "src"
    assert event.get_extension("clustername") == "c1"
    assert event.get_extension("originalsource") == ""  # NB: sdk-go's event builder always sets it; "" from a source
    assert event.get_data() == {
        "manifests": [{"kind": "ConfigMap"}],
        "deleteOption": {"propagationPolicy": "Foreground"},
        "manifestConfigs": [],
    }
    # NB: byte for byte what Go's json.Marshal(work.ObjectMeta) writes: field order, whole seconds in UTC.
    assert event.get_extension("metadata") == (
        '{"name":"r1","namespace":"c1","uid":"r1","resourceVersion":"3","generation":3,'
        '"creationTimestamp":"2026-01-01T00:00:00Z","labels":{"a":"b"}}'
    )


def test_work_metadata_keeps_what_the_client_gave_and_derives_the_rest() -> None:
    stored = {
        "name": "custom",
        "annotations": {"z": "1", "b": "2"},
        "labels": {"y": "1", "x": "2"},
        "finalizers": ["f"],
        "resourceVersion": "99",
        "deletionTimestamp": "2020-01-01T00:00:00Z",
    }
    deleted = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    text = payloads.work_metadata(
        stored, resource_id="r1", consumer="c1", version=7, created_at=NOW, deleted_at=deleted
    )
    assert text == (
        '{"name":"r1","namespace":"c1","uid":"r1","resourceVersion":"7","generation":7,'
        '"creationTimestamp":"2026-01-01T00:00:00Z","deletionTimestamp":"2026-01-02T03:04:05Z",'
        '"labels":{"x":"2","y":"1"},"annotations":{"b":"2","z":"1"},"finalizers":["f"]}'
    )
    live = json.loads(payloads.work_metadata(stored, resource_id="r1", consumer="c1", version=7, created_at=None))
    assert "deletionTimestamp" not in live
    assert live["creationTimestamp"] is None  # NB: Go writes a zero metav1.Time as null


def test_delete_request_carries_no_data_but_the_timestamp_and_metadata() -> None:
    for resync in (False, True):
        event = wire.spec_event(row(version=2, deleted_at=NOW), source="src", resync=resync)
        assert event.get_data() is None
        assert event.get_extension("deletiontimestamp") == NOW
        assert json.loads(event.get_extension("metadata"))["deletionTimestamp"] == "2026-01-01T00:00:00Z"
        for binary in (True, False):
            back = cloudevents_mqtt.decode(cloudevents_mqtt.encode(event, binary=binary))
            assert back.get_data() is None
            assert back.get_extension("originalsource") == ""


def test_delete_marker_names_the_version_the_agent_has() -> None:
    # NB: sdk-go's agent refuses a spec event without resourceversion; its source client sends the agent's version.
    marker = wire.delete_marker("gone", consumer="c1", source="src", version=4)
    assert marker.get_extension("resourceversion") == 4
    assert marker.get_extension("deletiontimestamp") is not None
    assert marker.get_data() is None


def status(consumer: str = "c1", **ext: Any) -> Any:
    extensions = {
        "resourceid": "r1",
        "resourceversion": "2",
        "clustername": consumer,
        "originalsource": "maestro",
        "sequenceid": sequence.SequenceGenerator().next(),
    }
    extensions.update(ext)
    conditions = [{"type": "Deleted", "status": "True", "reason": "", "message": "", "lastTransitionTime": "x"}]
    return events.make_event(
        type=types.manifestbundle_type("status", "update_request"),
        source="agent",
        data={"conditions": conditions, "resourceStatus": []},
        extensions=extensions,
    )


def test_decode_status() -> None:
    handler = ingest.Ingest(None, None, Settings(), source_events="sources/maestro/consumers/+/sourceevents")  # type: ignore[arg-type]
    report = handler.decode_status("c1", status())
    assert report.version == 2
    assert report.deleted
    assert report.status_hash == statushash.status_hash(
        {"conditions": report.conditions, "resourceStatus": report.resource_status}
    )
    assert set(report.stored()) == {"ObservedVersion", "SequenceID", "StatusHash", "conditions", "resourceStatus"}
    # NB: who the event says it is from is carried for the checks of :func:`server.services.status.accept`.
    claimed = handler.decode_status("c1", status("c2", originalsource="other"))
    assert (claimed.consumer, claimed.cluster_name, claimed.original_source) == ("c1", "c2", "other")
    for bad, reason in [
        (status(sequenceid="abc"), "malformed"),
        (status(resourceversion="x1"), "malformed"),
    ]:
        with pytest.raises(Rejected) as caught:
            handler.decode_status("c1", bad)
        assert caught.value.reason == reason


def test_round_robin_serves_every_consumer_one_batch_at_a_time() -> None:
    d = publisher.Dispatcher(None, None, Settings.of(source_id="m", publish_batch_size=2), dsn=None, source_events="s")  # type: ignore[arg-type]
    for consumer, count in (("storm", 10), ("calm", 1)):
        queue = d._consumers[consumer] = publisher._Consumer(consumer)
        d._order.append(consumer)
        for n in range(count):
            queue.items[f"{consumer}-{n}"] = publisher._Item(f"{consumer}-{n}", {n}, NOW)
    first = d._take()
    second = d._take()
    assert first is not None
    assert second is not None
    assert [i.resource_id for i in first[1]] == ["storm-0", "storm-1"]
    assert [i.resource_id for i in second[1]] == ["calm-0"]
    assert d._take() is None  # NB: both consumers are busy: no consumer gets two batches in flight.
