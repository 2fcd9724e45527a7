"""The CloudEvents ↔ MQTT binding: round trips in both modes and one error type for every malformed input."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import cloudevents_mqtt, events, types
from protocol.cloudevents_mqtt import MQTTMessage
from protocol.errors import PayloadTooLargeError, ProtocolError

SPEC_CREATE = types.manifestbundle_type("spec", types.CREATE_REQUEST)
WHEN = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def _event(**extensions: object) -> events.CloudEvent:
    return events.make_event(
        type=SPEC_CREATE,
        source="maestro",
        id="e-1",
        time=WHEN,
        data={"manifests": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}]},
        extensions={"resourceid": "r1", "resourceversion": 3, "clustername": "c1", **extensions},
    )


def _binary(
    props: dict[str, str], payload: bytes = b"{}", content_type: str | None = "application/json"
) -> MQTTMessage:
    base = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "ce-type": SPEC_CREATE}
    return MQTTMessage(payload=payload, content_type=content_type, user_properties=tuple({**base, **props}.items()))


def test_binary_writes_upstream_user_properties() -> None:
    message = cloudevents_mqtt.to_binary(_event(deletiontimestamp=WHEN))
    props = dict(message.user_properties)
    assert message.content_type == "application/json"
    assert props["ce-specversion"] == "1.0"
    assert props["ce-type"] == SPEC_CREATE
    assert props["ce-time"] == "2026-01-02T03:04:05.678000Z"
    assert props["ce-resourceversion"] == "3"
    assert props["ce-deletiontimestamp"] == "2026-01-02T03:04:05.678000Z"
    assert "ce-datacontenttype" not in props
    assert json.loads(message.payload)["manifests"][0]["kind"] == "ConfigMap"


@pytest.mark.parametrize("encode", [cloudevents_mqtt.to_binary, cloudevents_mqtt.to_structured])
def test_round_trip(encode: object) -> None:
    sent = _event(deletiontimestamp=WHEN, metadata='{"name":"w"}', originalsource="")
    message = encode(sent)  # type: ignore[operator]
    got = cloudevents_mqtt.decode(message)
    assert got.get_attributes() == sent.get_attributes()
    assert got.get_data() == sent.get_data()
    assert got.get_extension("resourceversion") == 3


def test_binary_reads_unprefixed_names_and_ints_as_strings() -> None:
    message = MQTTMessage(
        payload=b'{"a":1}',
        content_type="application/json",
        user_properties=(
            ("specversion", "1.0"),
            ("id", "1"),
            ("source", "s"),
            ("type", SPEC_CREATE),
            ("resourceversion", "42"),
            ("traceparent-x", "ignored"),
        ),
    )
    event = cloudevents_mqtt.decode(message)
    assert event.get_extension("resourceversion") == 42
    assert event.get_data() == {"a": 1}
    assert types.int_extension(event, "resourceversion") == 42


def test_prefixed_wins_over_bare() -> None:
    message = _binary({"ce-resourceid": "prefixed", "resourceid": "bare"})
    assert cloudevents_mqtt.from_binary(message).get_extension("resourceid") == "prefixed"


def test_structured_without_content_type_is_detected() -> None:
    message = cloudevents_mqtt.to_structured(_event())
    bare = MQTTMessage(payload=message.payload)  # MQTT 3.1.1 carries no content type
    assert cloudevents_mqtt.is_structured(bare)
    assert cloudevents_mqtt.decode(bare).get_extension("resourceid") == "r1"


def test_structured_keeps_go_written_string_ints() -> None:
    doc = json.loads(cloudevents_mqtt.to_structured(_event()).payload)
    doc["resourceversion"] = "5"
    event = cloudevents_mqtt.decode(MQTTMessage(payload=json.dumps(doc).encode()))
    assert event.get_extension("resourceversion") == 5


def test_empty_payload_is_no_data() -> None:
    assert cloudevents_mqtt.decode(_binary({}, payload=b"")).get_data() is None


def test_binary_data_round_trips_in_structured_mode() -> None:
    event = events.make_event(type=SPEC_CREATE, source="s", data=None)
    raw = events.CloudEvent({**event.get_attributes(), "datacontenttype": "application/octet-stream"}, b"\x00\xff")
    got = cloudevents_mqtt.decode(cloudevents_mqtt.to_structured(raw))
    assert got.get_data() == b"\x00\xff"


@pytest.mark.parametrize(
    "message",
    [
        _binary({}, payload=b"{not json"),
        _binary({}, payload=b"\xff\xfe"),
        _binary({}, payload=b"[1, 2]"),
        _binary({"ce-specversion": "0.3"}),
        _binary({"ce-specversion": "2.0"}),
        _binary({"ce-type": "garbage"}),
        _binary({"ce-type": "a.b.c.spec.explode"}),
        _binary({"ce-type": "a.b.c.metadata.create_request"}),
        _binary({"ce-id": ""}),
        _binary({"ce-resourceversion": "one"}),
        _binary({"ce-resourceversion": "1.5"}),
        _binary({"ce-time": "yesterday"}),
        _binary({"ce-deletiontimestamp": "2026-13-45"}),
        MQTTMessage(payload=b"{}", content_type="application/json"),
        MQTTMessage(payload=b"", content_type="application/cloudevents+json"),
        MQTTMessage(payload=b"null", content_type="application/cloudevents+json"),
        MQTTMessage(payload=b'{"specversion":"1.0","id":"1","source":"s"}', content_type=None),
        MQTTMessage(payload=b'{"specversion":"1.0","id":1,"source":"s","type":"a.b.c.spec.create_request"}'),
        MQTTMessage(payload=b'{"specversion":"1.0","id":"1","source":"s","type":"a.b.c.spec.create_request","x":{}}'),
        MQTTMessage(
            payload=b'{"specversion":"1.0","id":"1","source":"s","type":"a.b.c.spec.create_request","data":[1]}'
        ),
        MQTTMessage(
            payload=b'{"specversion":"1.0","id":"1","source":"s","type":"a.b.c.spec.create_request","data_base64":"!!"}'
        ),
        MQTTMessage(
            payload=b'{"specversion":"1.0","id":"1","source":"s","type":"a.b.c.spec.create_request","Bad_Name":"x"}'
        ),
        MQTTMessage(payload=b"[" * 100000, content_type="application/cloudevents+json"),
    ],
)
def test_malformed_input_raises_protocol_error(message: MQTTMessage) -> None:
    with pytest.raises(ProtocolError):
        cloudevents_mqtt.decode(message)


@given(
    payload=st.binary(max_size=300),
    content_type=st.one_of(st.none(), st.sampled_from(["application/json", "application/cloudevents+json", "x/y"])),
    props=st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), max_size=8),
)
def test_fuzzed_input_raises_only_protocol_error(
    payload: bytes, content_type: str | None, props: list[tuple[str, str]]
) -> None:
    message = MQTTMessage(payload=payload, content_type=content_type, user_properties=tuple(props))
    with contextlib.suppress(ProtocolError):
        cloudevents_mqtt.decode(message)


def test_size_check() -> None:
    message = cloudevents_mqtt.to_binary(_event())
    cloudevents_mqtt.check_size(message, limit=10_000)
    with pytest.raises(PayloadTooLargeError) as info:
        cloudevents_mqtt.check_size(message, limit=100)
    assert info.value.limit == 100
    assert info.value.size == cloudevents_mqtt.encoded_size(message)
