"""The exact bytes of the spec events the hub publishes, in both MQTT modes (what agents parse; the Go agent's e2e
tests pin the same). Encoding internals may change for speed; these bytes may not."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest
from cloudevents.core.v1.event import CloudEvent

from protocol import cloudevents_mqtt
from server.dispatch import wire
from server.store.rows import ResourceRow

T = datetime(2026, 12, 7, 20, 15, 1, 123456, tzinfo=UTC)
ROW = ResourceRow(
    id="0b5c7f8e-1",
    name="n",
    source="maestro",
    consumer_name="cluster1",
    type="Bundle",
    version=3,
    payload={
        "metadata": {"name": "web", "labels": {"z": "1", "app": "wéb"}, "annotations": {}},
        "data": {
            "manifests": [{"kind": "ConfigMap", "data": {"k": "ü ☃", "n": 1.5, "t": True, "e": None}}],
            "deleteOption": {"propagationPolicy": "Foreground"},
        },
    },
    status=None,
    created_at=T,
    updated_at=T,
    deleted_at=None,
)
TYPE = "io.open-cluster-management.works.v1alpha1.manifestbundles.spec."
HEAD = '"specversion":"1.0","id":"id-1","source":"maestro","type":"' + TYPE
COMMON = '"time":"2026-12-07T20:15:01.123456Z","datacontenttype":"application/json","clustername":"cluster1",'
COMMON += '"originalsource":"","resourceid":"0b5c7f8e-1",'
META = (
    '{"name":"0b5c7f8e-1","namespace":"cluster1","uid":"0b5c7f8e-1","resourceVersion":"%d","generation":%d,'
    '"creationTimestamp":"2026-12-07T20:15:01Z",%s"labels":{"app":"wéb","z":"1"}}'
)
DATA = (
    '{"manifests":[{"kind":"ConfigMap","data":{"k":"ü ☃","n":1.5,"t":true,"e":null}}],'
    '"deleteOption":{"propagationPolicy":"Foreground"},"manifestConfigs":[]}'
)
DELETED = '"deletionTimestamp":"2026-12-07T20:16:00Z",'


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'


def _fixed(row: ResourceRow) -> CloudEvent:
    event = wire.spec_event(row, source="maestro")
    return CloudEvent({**event.get_attributes(), "id": "id-1", "time": T}, event.get_data())


@pytest.mark.parametrize("deleting", [False, True])
def test_spec_event_bytes_in_both_modes(deleting: bool) -> None:
    if deleting:
        row = dataclasses.replace(ROW, version=4, deleted_at=datetime(2026, 12, 7, 20, 16, tzinfo=UTC))
        meta, head = META % (4, 4, DELETED), HEAD + 'delete_request",' + COMMON
        attrs = head + '"resourceversion":4,"deletiontimestamp":"2026-12-07T20:16:00Z",'
        structured, payload = "{" + attrs + '"metadata":' + _quoted(meta) + "}", ""
    else:
        row = ROW
        meta, head = META % (3, 3, ""), HEAD + 'update_request",' + COMMON
        structured = "{" + head + '"resourceversion":3,"metadata":' + _quoted(meta) + ',"data":' + DATA + "}"
        payload = DATA

    # NB: structured mode is the cloudevents SDK's JSON event format: the same document, in its (non-compact, ASCII)
    # spelling.
    sdk_spelling = json.dumps(json.loads(structured)).encode()
    assert cloudevents_mqtt.encode(_fixed(row), binary=False).payload == sdk_spelling

    binary = cloudevents_mqtt.encode(_fixed(row), binary=True)
    assert binary.payload == payload.encode()
    assert binary.content_type == "application/json"
    version = str(row.version)
    expected = [
        ("ce-specversion", "1.0"),
        ("ce-id", "id-1"),
        ("ce-source", "maestro"),
        ("ce-type", TYPE + ("delete_request" if deleting else "update_request")),
        ("ce-time", "2026-12-07T20:15:01.123456Z"),
        ("ce-clustername", "cluster1"),
        ("ce-originalsource", ""),
        ("ce-resourceid", "0b5c7f8e-1"),
        ("ce-resourceversion", version),
        *([("ce-deletiontimestamp", "2026-12-07T20:16:00Z")] if deleting else []),
        ("ce-metadata", meta),
    ]
    assert list(binary.user_properties) == expected


@dataclasses.dataclass
class _Mode:
    binary_mode: bool

    async def publish(self, *args: object, **kwargs: object) -> None:  # pragma: no cover - never called
        raise AssertionError


ROWS = [
    ROW,
    dataclasses.replace(ROW, version=1),
    dataclasses.replace(ROW, version=4, deleted_at=datetime(2026, 12, 7, 20, 16, tzinfo=UTC)),
    dataclasses.replace(ROW, version=2, payload={}, created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    dataclasses.replace(ROW, payload={"metadata": {"name": "x", "annotations": {"b": "2", "a": "\u2028"}}, "data": {}}),
]


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("row", ROWS)
def test_the_dispatchers_message_is_the_spec_events_encoding(row: ResourceRow, binary: bool) -> None:
    fast = wire.spec_message(row, _Mode(binary), source="maestro", id="id-1", time=T)
    assert fast == cloudevents_mqtt.encode(_fixed(row), binary=binary)
    plain = wire.spec_message(row, _Mode(binary), source="maestro")
    assert plain != wire.spec_message(row, _Mode(binary), source="maestro"), "a new id every time"
