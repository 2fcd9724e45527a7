"""Topic names, subscriptions and parsing (upstream's layout and regexes)."""

from __future__ import annotations

import pytest

from protocol import topics
from protocol.errors import ProtocolError


def test_names() -> None:
    assert topics.source_events("maestro", "c1") == "sources/maestro/consumers/c1/sourceevents"
    assert topics.agent_events("maestro", "c1") == "sources/maestro/consumers/c1/agentevents"
    assert topics.source_broadcast("maestro") == "sources/maestro/consumers/+/sourcebroadcast"
    assert topics.agent_broadcast() == "sources/+/consumers/+/agentbroadcast"
    assert topics.server_subscription("maestro") == "sources/maestro/consumers/+/agentevents"
    assert (
        topics.server_subscription("maestro", share_group="statussubscribers")
        == "$share/statussubscribers/sources/maestro/consumers/+/agentevents"
    )
    assert topics.agent_subscription("maestro", "c1") == "sources/maestro/consumers/c1/sourceevents"
    assert topics.agent_subscription("+", "c1") == "sources/+/consumers/c1/sourceevents"


@pytest.mark.parametrize("name", ["", "UPPER", "a/b", "a+b", "+", "#", "a_b"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(ProtocolError):
        topics.source_events("maestro", name)


def test_parse() -> None:
    parts = topics.parse("sources/maestro/consumers/cluster-1/agentevents")
    assert parts == topics.TopicParts(source="maestro", consumer="cluster-1", kind=topics.AGENT_EVENTS)
    assert topics.parse("sources/maestro/consumers/+/sourcebroadcast").kind == topics.SOURCE_BROADCAST


@pytest.mark.parametrize(
    "topic",
    [
        "sources/maestro/consumers/c1",
        "foo/maestro/consumers/c1/agentevents",
        "sources/maestro/clusters/c1/agentevents",
        "$share/g/sources/maestro/consumers/c1/agentevents",
        "sources/Maestro/consumers/c1/agentevents",
    ],
)
def test_parse_rejects(topic: str) -> None:
    with pytest.raises(ProtocolError):
        topics.parse(topic)


def test_fill_and_validate() -> None:
    configured = "$share/statussubscribers/sources/maestro/consumers/+/agentevents"
    assert topics.validate_filter(configured) == configured
    assert topics.fill(configured, consumer="c9") == "sources/maestro/consumers/c9/agentevents"
    assert topics.fill("sources/+/consumers/c1/agentbroadcast", source="maestro") == (
        "sources/maestro/consumers/c1/agentbroadcast"
    )
    with pytest.raises(ProtocolError):
        topics.validate_filter("sources/maestro/consumers/#")
    with pytest.raises(ProtocolError):
        topics.shared("x", "Bad Group")


def test_matches() -> None:
    assert topics.matches("$share/g/sources/maestro/consumers/+/agentevents", "sources/maestro/consumers/c/agentevents")
    assert topics.matches("sources/#", "sources/a/b")
    assert not topics.matches("sources/+/consumers/+/agentevents", "sources/a/consumers/b/sourceevents")
    assert not topics.matches("sources/+", "sources/a/b")
    assert topics.strip_share("plain/topic") == "plain/topic"
