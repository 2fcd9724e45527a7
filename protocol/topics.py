"""MQTT topic names, as upstream's sdk-go and Maestro's charts lay them out.

``sources/<source>/consumers/<consumer>/sourceevents`` carries spec events hub → agent and
``…/agentevents`` carries status events agent → hub. The hub subscribes with ``+`` for the consumer
(optionally through ``$share/<group>/`` so that each status reaches one replica); an agent uses its own
consumer name. The broadcast variants (``sourcebroadcast``/``agentbroadcast``) have no consumer segment of
their own meaning: they reach every agent (hub status resync) or every source (agent spec resync).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Final

from protocol.errors import ProtocolError

SOURCE_EVENTS: Final = "sourceevents"
AGENT_EVENTS: Final = "agentevents"
SOURCE_BROADCAST: Final = "sourcebroadcast"
AGENT_BROADCAST: Final = "agentbroadcast"
WILDCARD: Final = "+"
SHARE_PREFIX: Final = "$share/"

#: Upstream's validation regexes (sdk-go ``options/mqtt``).
EVENTS_TOPIC_PATTERN: Final = re.compile(
    r"^(\$share/[a-z0-9-]+/)?([a-z]+)/([a-z0-9-]+|\+)/([a-z]+)/([a-z0-9-]+|\+)/(sourceevents|agentevents)$"
)
BROADCAST_TOPIC_PATTERN: Final = re.compile(
    r"^(\$share/[a-z0-9-]+/)?([a-z]+)/([a-z0-9-]+|\+)/([a-z]+)/([a-z0-9-]+|\+)/(sourcebroadcast|agentbroadcast)$"
)
_NAME = re.compile(r"^[a-z0-9-]+$")
_GROUP = re.compile(r"^[a-z0-9-]+$")


@dataclasses.dataclass(frozen=True, slots=True)
class TopicParts:
    """The names carried by a concrete (received) topic."""

    source: str
    consumer: str
    kind: str  # one of SOURCE_EVENTS, AGENT_EVENTS, SOURCE_BROADCAST, AGENT_BROADCAST


def _check_name(what: str, value: str, *, wildcard: bool = False) -> str:
    if (wildcard and value == WILDCARD) or _NAME.match(value):
        return value
    raise ProtocolError(f"invalid {what} {value!r}: must match [a-z0-9-]+")


def _topic(source: str, consumer: str, kind: str, *, wildcard: bool = False) -> str:
    source = _check_name("source", source, wildcard=wildcard)
    consumer = _check_name("consumer", consumer, wildcard=wildcard)
    return f"sources/{source}/consumers/{consumer}/{kind}"


def source_events(source: str, consumer: str) -> str:
    """Topic the hub publishes spec events to for one consumer (and the agent subscribes to)."""
    return _topic(source, consumer, SOURCE_EVENTS)


def agent_events(source: str, consumer: str) -> str:
    """Topic an agent publishes status events (and spec resyncs) to."""
    return _topic(source, consumer, AGENT_EVENTS)


def source_broadcast(source: str, consumer: str = WILDCARD) -> str:
    """Topic for hub → every agent events (status resync to all); upstream keeps ``+`` as the consumer
    segment."""
    return _topic(source, consumer, SOURCE_BROADCAST, wildcard=True)


def agent_broadcast(source: str = WILDCARD, consumer: str = WILDCARD) -> str:
    """Topic for agent → every source events (spec resync for all sources)."""
    return _topic(source, consumer, AGENT_BROADCAST, wildcard=True)


def shared(topic_filter: str, group: str) -> str:
    """Prefix a filter with ``$share/<group>/`` so that each message reaches one member of the group."""
    if not _GROUP.match(group):
        raise ProtocolError(f"invalid shared subscription group {group!r}")
    return f"{SHARE_PREFIX}{group}/{topic_filter}"


def server_subscription(source: str, *, share_group: str | None = None) -> str:
    """The hub's status subscription: ``[$share/<group>/]sources/<source>/consumers/+/agentevents``."""
    topic_filter = _topic(source, WILDCARD, AGENT_EVENTS, wildcard=True)
    return shared(topic_filter, share_group) if share_group else topic_filter


def agent_subscription(source: str, consumer: str) -> str:
    """The agent's spec subscription; ``source`` may be ``+`` to receive from every source."""
    return _topic(source, consumer, SOURCE_EVENTS, wildcard=True)


def strip_share(topic: str) -> str:
    """``$share/<group>/<filter>`` → ``<filter>``; other topics unchanged."""
    if topic.startswith(SHARE_PREFIX):
        _, _, rest = topic[len(SHARE_PREFIX) :].partition("/")
        return rest
    return topic


def parse(topic: str) -> TopicParts:
    """Source, consumer and kind of a received topic; anything that is not one of ours is a
    :class:`ProtocolError`."""
    match = EVENTS_TOPIC_PATTERN.match(topic) or BROADCAST_TOPIC_PATTERN.match(topic)
    if match is None or match.group(1) or match.group(2) != "sources" or match.group(4) != "consumers":
        raise ProtocolError(f"not a Maestro topic: {topic!r}")
    return TopicParts(source=match.group(3), consumer=match.group(5), kind=match.group(6))


def validate_filter(topic_filter: str) -> str:
    """Check a configured topic (filter) against upstream's regexes and return it unchanged."""
    if EVENTS_TOPIC_PATTERN.match(topic_filter) or BROADCAST_TOPIC_PATTERN.match(topic_filter):
        return topic_filter
    raise ProtocolError(f"invalid topic {topic_filter!r}")


def fill(topic_filter: str, *, source: str | None = None, consumer: str | None = None) -> str:
    """Replace the ``+`` wildcards of a configured topic by concrete names (upstream's publish-topic rule).

    ``$share/<group>/`` is dropped because one publishes to topics, not to subscriptions.
    """
    parts = strip_share(validate_filter(topic_filter)).split("/")
    if parts[1] == WILDCARD and source is not None:
        parts[1] = _check_name("source", source)
    if parts[3] == WILDCARD and consumer is not None:
        parts[3] = _check_name("consumer", consumer)
    return "/".join(parts)


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching (``+`` and ``#``), ignoring any ``$share`` prefix; used to route received
    messages."""
    pattern = strip_share(topic_filter).split("/")
    levels = topic.split("/")
    for i, part in enumerate(pattern):
        if part == "#":
            return True
        if i >= len(levels) or (part != WILDCARD and part != levels[i]):
            return False
    return len(pattern) == len(levels)
