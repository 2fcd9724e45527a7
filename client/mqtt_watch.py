"""``maestro mqtt watch``: print every CloudEvent on a consumer's (or every consumer's) topics, decoded.

It subscribes with the shared adapter (:class:`protocol.mqtt.Broker`: reconnects and resubscribes on its own)
to ``sources/<source>/consumers/<consumer|+>/sourceevents`` (specs, hub → agent) and ``…/agentevents``
(statuses and resyncs, agent → hub). An ordinary subscription beside the hub's shared one and the agent's
takes nothing from them: the broker gives every subscriber its copy. Both content modes are read
(:func:`protocol.cloudevents_mqtt.decode`); binary mode needs MQTT 5, so a config with ``protocolVersion: 3``
sees binary events as unreadable.

The broker config is the hub's or an agent's (upstream's YAML): its address, credentials and TLS are used, its
topics only tell the source when ``--source`` is not given. The session is clean (``sessionExpiry: 0``): a
watcher that goes away leaves nothing queued on the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
import uuid

from client import event_lines
from client.errors import CLIError
from protocol import cloudevents_mqtt, mqtt, mqtt_config, topics
from protocol.backoff import Backoff
from protocol.errors import ConfigError, ConnectError, ProtocolError, SubscribeError


def subscriptions(source: str, consumer: str | None) -> list[str]:
    """The two topic filters to watch; ``None`` watches every consumer of ``source``."""
    if consumer is None:
        return [topics.agent_subscription(source, topics.WILDCARD), topics.server_subscription(source)]
    return [topics.source_events(source, consumer), topics.agent_events(source, consumer)]


def source_of(config: mqtt_config.MQTTConfig) -> str | None:
    """The source named by the config's topics (``sources/<source>/…``), if it names one."""
    parts = topics.strip_share(config.topics.source_events).split("/")
    return parts[1] if len(parts) > 1 and parts[1] != topics.WILDCARD else None


def run(args: argparse.Namespace) -> int:
    try:
        config = mqtt_config.load(args.mqtt_config_file)
    except ConfigError as exc:
        raise CLIError(f"--mqtt-config-file {args.mqtt_config_file}: {exc}") from None
    source = args.source or source_of(config) or "maestro"
    try:
        filters = subscriptions(source, args.consumer)
    except ProtocolError as exc:
        raise CLIError(str(exc)) from None
    logging.basicConfig(level=logging.WARNING, format="maestro: %(message)s", stream=sys.stderr)
    config = dataclasses.replace(config, session_expiry=0)
    return asyncio.run(_watch(config, filters, output=args.output, connect_timeout=args.timeout))


async def _watch(config: mqtt_config.MQTTConfig, filters: list[str], *, output: str, connect_timeout: float) -> int:
    broker = mqtt.Broker(
        config,
        client_id=f"maestro-watch-{uuid.uuid4().hex[:12]}",
        subscriptions=filters,
        first_connect_timeout=connect_timeout,
        reconnect=Backoff(min=1.0, max=10.0),
    )
    adapter_log = logging.getLogger(mqtt.__name__)
    attempts = _LastWarning()
    adapter_log.addHandler(attempts)
    adapter_log.propagate = False  # NB: retries before the first link are not news; the last one explains a failure.
    try:
        await broker.start()
    except (ConnectError, SubscribeError) as exc:
        last = f" (last attempt: {attempts.last})" if attempts.last else ""
        raise CLIError(f"{config.host}:{config.port}: {exc}{last}") from None
    finally:
        adapter_log.removeHandler(attempts)
        adapter_log.propagate = True
    try:
        print(f"maestro: watching {' and '.join(filters)} on {config.host}:{config.port}", file=sys.stderr, flush=True)
        async for item in broker.messages():
            _print(item, output)
    finally:
        await broker.close()
    return 0


class _LastWarning(logging.Handler):
    """Keeps the adapter's last warning (why the last connection attempt failed), without printing it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.last = message.split(": ", 1)[-1].split("; retrying in ")[0]


def _print(item: mqtt.Received, output: str) -> None:
    try:
        event = cloudevents_mqtt.decode(item.message)
    except ProtocolError as exc:
        if output == "json":
            print(json.dumps({"topic": item.topic, "error": str(exc)}), file=sys.stderr, flush=True)
        else:
            print(event_lines.unreadable(item.topic, str(exc)), flush=True)
        return
    if output == "json":
        payload = cloudevents_mqtt.to_structured(event).payload.decode("utf-8")
        print(payload, flush=True)
    else:
        print(event_lines.line(item.topic, event), flush=True)
