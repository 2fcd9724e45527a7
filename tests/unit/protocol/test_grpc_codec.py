"""The gRPC codec: sdk-go's attribute layout, round trips, tolerant readers, typed errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from protocol import cloudevents_mqtt, events, grpc_codec, types
from protocol.errors import ProtocolError
from protocol.grpc import cloudevent_pb2 as pb

WHEN = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def _event() -> events.CloudEvent:
    return events.make_event(
        type=types.manifestbundle_type("spec", types.DELETE_REQUEST),
        source="maestro",
        id="e1",
        time=WHEN,
        data={"manifests": []},
        extensions={
            "resourceid": "r1",
            "resourceversion": 4,
            "clustername": "c1",
            "deletiontimestamp": WHEN,
            "metadata": '{"name":"w"}',
        },
    )


def test_sdk_go_layout() -> None:
    message = grpc_codec.to_proto(_event())
    assert (message.id, message.source, message.spec_version) == ("e1", "maestro", "1.0")
    assert message.type.endswith(".spec.delete_request")
    attrs = message.attributes
    assert attrs["contenttype"].ce_string == "application/json"
    assert attrs["ce-time"].ce_timestamp.ToDatetime(tzinfo=UTC) == WHEN
    assert attrs["ce-resourceversion"].WhichOneof("attr") == "ce_integer"
    assert attrs["ce-resourceversion"].ce_integer == 4
    assert attrs["ce-deletiontimestamp"].WhichOneof("attr") == "ce_timestamp"
    assert attrs["ce-clustername"].ce_string == "c1"
    assert message.WhichOneof("data") == "binary_data"
    assert message.binary_data == b'{"manifests":[]}'


def test_round_trip_through_bytes() -> None:
    sent = _event()
    got = grpc_codec.from_bytes(grpc_codec.to_proto(sent).SerializeToString())
    assert got.get_attributes() == sent.get_attributes()
    assert got.get_data() == sent.get_data()


def test_event_from_mqtt_binary_reencodes_with_integer_version() -> None:
    via_mqtt = cloudevents_mqtt.decode(cloudevents_mqtt.to_binary(_event()))
    message = grpc_codec.to_proto(via_mqtt)
    assert message.attributes["ce-resourceversion"].ce_integer == 4


def test_tolerant_reader() -> None:
    message = pb.CloudEvent(
        id="1", source="s", spec_version="1.0", type=types.manifestbundle_type("spec", "create_request")
    )
    message.attributes["resourceid"].ce_string = "r"
    message.attributes["resourceversion"].ce_string = "9"
    message.attributes["datacontenttype"].ce_string = "application/json"
    message.text_data = '{"manifests": [1]}'
    event = grpc_codec.from_proto(message)
    assert event.get_extension("resourceid") == "r"
    assert event.get_extension("resourceversion") == 9
    assert event.get_data() == {"manifests": [1]}


def test_heartbeat() -> None:
    beat = grpc_codec.heartbeat()
    assert grpc_codec.is_heartbeat(beat)
    assert beat.id
    assert beat.source == ""


def _valid() -> pb.CloudEvent:
    return grpc_codec.to_proto(_event())


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: setattr(m, "spec_version", "0.3"),
        lambda m: setattr(m, "type", "nonsense"),
        lambda m: setattr(m, "id", ""),
        lambda m: setattr(m, "binary_data", b"{oops"),
        lambda m: setattr(m, "binary_data", b"\xff"),
        lambda m: setattr(m, "binary_data", b"[]"),
        lambda m: m.attributes["ce-resourceversion"].MergeFrom(pb.CloudEventAttributeValue(ce_string="x")),
        lambda m: m.attributes["ce-empty"].Clear(),
        lambda m: m.attributes["contenttype"].MergeFrom(pb.CloudEventAttributeValue(ce_integer=1)),
        lambda m: setattr(m.proto_data, "type_url", "type.googleapis.com/x"),
    ],
)
def test_malformed_raises_protocol_error(mutate: object) -> None:
    message = _valid()
    mutate(message)  # type: ignore[operator]
    with pytest.raises(ProtocolError):
        grpc_codec.from_proto(message)


def test_garbage_bytes() -> None:
    with pytest.raises(ProtocolError):
        grpc_codec.from_bytes(b"\xff\xff\xff\xff")


def test_int32_overflow_is_refused() -> None:
    event = events.make_event(
        type=types.manifestbundle_type("spec", "create_request"),
        source="s",
        data={},
        extensions={"resourceversion": 2**40},
    )
    with pytest.raises(ProtocolError):
        grpc_codec.to_proto(event)
