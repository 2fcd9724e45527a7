"""Event type strings, extension readers and resync payload readers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from protocol import events, payloads, types
from protocol.errors import ProtocolError


def test_parse_and_format() -> None:
    text = "io.open-cluster-management.works.v1alpha1.manifestbundles.status.update_request"
    parsed = types.EventType.parse(text)
    assert parsed == types.EventType(types.MANIFESTBUNDLE_DATA_TYPE, "status", types.UPDATE_REQUEST)
    assert str(parsed) == text
    assert types.manifestbundle_type("spec", types.RESYNC_REQUEST).endswith(".spec.resync_request")


@pytest.mark.parametrize(
    "value",
    [None, 42, "", "a.b", "a.b.c.spec", "a.b.c.specs.create_request", "a.b.c.spec.nope", "a..c.spec.create_request"],
)
def test_parse_rejects_garbage(value: object) -> None:
    with pytest.raises(ProtocolError):
        types.EventType.parse(value)


@pytest.mark.parametrize(("value", "expected"), [(3, 3), ("3", 3), (" 17 ", 17), ("-1", -1)])
def test_parse_int(value: object, expected: int) -> None:
    assert types.parse_int("resourceversion", value) == expected


@pytest.mark.parametrize("value", [True, "x", "1.0", 1.0, None, ""])
def test_parse_int_rejects(value: object) -> None:
    with pytest.raises(ProtocolError, match="resourceversion"):
        types.parse_int("resourceversion", value)


def test_timestamps() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    assert types.format_timestamp(when) == "2026-01-01T00:00:00Z"
    assert types.parse_timestamp("t", "2026-01-01T00:00:00Z") == when
    assert types.parse_timestamp("t", "2026-01-01T00:00:00") == when
    with pytest.raises(ProtocolError):
        types.parse_timestamp("t", 12)


def test_extension_readers() -> None:
    event = events.make_event(
        type=types.manifestbundle_type("spec", types.DELETE_REQUEST),
        source="maestro",
        data={},
        extensions={"resourceversion": "7", "resourceid": "r", "deletiontimestamp": "2026-01-01T00:00:00Z"},
    )
    assert types.int_extension(event, types.EXT_RESOURCE_VERSION) == 7
    assert types.str_extension(event, types.EXT_RESOURCE_ID) == "r"
    assert types.str_extension(event, types.EXT_CLUSTER_NAME, default="") == ""
    assert types.timestamp_extension(event, types.EXT_DELETION_TIMESTAMP) == datetime(2026, 1, 1, tzinfo=UTC)
    assert types.int_extension(event, types.EXT_SEQUENCE_ID, default=0) == 0
    with pytest.raises(ProtocolError):
        types.int_extension(event, types.EXT_SEQUENCE_ID)
    with pytest.raises(ProtocolError):
        types.str_extension(event, types.EXT_CLUSTER_NAME)
    assert types.event_type(event).action == types.DELETE_REQUEST


def test_resync_readers() -> None:
    data = {"resourceVersions": [{"resourceID": "a", "resourceVersion": "2"}, {"resourceID": "b"}]}
    assert payloads.read_spec_resync(data) == [
        {"resourceID": "a", "resourceVersion": 2},
        {"resourceID": "b", "resourceVersion": 0},
    ]
    assert payloads.read_spec_resync({}) == []
    assert payloads.read_status_resync({"statusHashes": [{"resourceID": "a", "statusHash": "h"}]}) == [
        {"resourceID": "a", "statusHash": "h"}
    ]
    assert payloads.read_status_resync(None) == []


@pytest.mark.parametrize(
    "data",
    [[], "x", {"resourceVersions": {}}, {"resourceVersions": [1]}, {"resourceVersions": [{"resourceID": ""}]}],
)
def test_resync_readers_reject(data: object) -> None:
    with pytest.raises(ProtocolError):
        payloads.read_spec_resync(data)


def test_status_resync_rejects_non_string_hash() -> None:
    with pytest.raises(ProtocolError):
        payloads.read_status_resync({"statusHashes": [{"resourceID": "a", "statusHash": 1}]})
