"""The development broker: amqtt in-process, used when no ``--mqtt-config-file`` is given.

amqtt 0.12 speaks MQTT 3.1.1 only, so clients use structured mode and there are no shared subscriptions (the hub
subscribes in broadcast mode). Every client must log in with a user of :mod:`server.dispatch.broker_users` (the hub's
own, created at the first start, or an agent's from ``maestro agent-config``), and an agent's user reaches only its
consumer's topics: even on one host, nobody reads another consumer's manifests or forges its status.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from protocol import cork, mqtt_config
from server.dispatch import broker_users

log = logging.getLogger(__name__)

DEFAULT_PORT = 1883
USERNAME = broker_users.HUB_USER


def users_dir(data_dir: Path) -> Path:
    return data_dir / "mqtt"


class EmbeddedBroker:
    def __init__(self, *, data_dir: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        self.host = host
        self.port = port
        self.users = broker_users.Users(users_dir(data_dir))
        self.password = self.users.hub_password()
        self._broker: Any = None

    def config(self, source_id: str) -> mqtt_config.MQTTConfig:
        """What the hub (and a local agent, with its consumer name) uses to reach this broker."""
        return mqtt_config.MQTTConfig(
            host=self.host,
            port=self.port,
            topics=mqtt_config.TopicsConfig(
                source_events=f"sources/{source_id}/consumers/+/sourceevents",
                agent_events=f"sources/{source_id}/consumers/+/agentevents",
            ),
            username=USERNAME,
            password=self.password,
            protocol_version=3,
            dial_timeout=10.0,
        )

    async def start(self) -> None:
        from amqtt.broker import Broker

        # NB: amqtt and its state machine library log every packet and transition at INFO.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)

        from server.dispatch import embedded_access

        key = embedded_access.register(self.users)
        self._broker = _broker_class(Broker)(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                "plugins": {
                    f"{embedded_access.__name__}.UserAuth": {"users": key},
                    f"{embedded_access.__name__}.TopicAccess": {"users": key},
                },
            }
        )
        # NB: a failed start (a busy port) is reported by the caller in one line; amqtt would log a traceback too.
        broker_log = logging.getLogger("amqtt.broker")
        level = broker_log.level
        broker_log.setLevel(logging.CRITICAL)
        try:
            await self._broker.start()
        finally:
            broker_log.setLevel(level)
        log.info("embedded MQTT broker (amqtt, MQTT 3.1.1) listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()


def _broker_class(base: type[Any]) -> type[Any]:
    """amqtt's ``Broker`` with less work per message (the same packets, checks and deliveries).

    * The hub's own publishes and deliveries skip the topic plugins: amqtt runs each plugin in a task of its own
      and waits for them all, per message, and for the hub's user (consumer ``*``) the answer is always yes. A
      session has a user name only once :func:`~server.dispatch.embedded_access.guard_connects` checked its
      password, and the hub's user name is never an agent's (those end in ``-agent``).
    * Each connection's writes are corked per loop iteration (:mod:`protocol.cork`): the PUBACKs of a dispatch
      batch go back to the hub in one send rather than one each.
    """
    from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
    from amqtt.contexts import Action
    from amqtt.session import Session

    class CorkedWriter(StreamWriterAdapter):  # type: ignore[misc]
        def __init__(self, writer: asyncio.StreamWriter) -> None:
            super().__init__(writer)
            self._cork = cork.for_transport(writer.transport)

        def write(self, data: bytes) -> None:
            if self._cork is not None and not self.is_closed:
                self._cork()
            super().write(data)

    class Broker(base):  # type: ignore[misc]
        async def stream_connected(
            self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
        ) -> None:
            await self._client_connected(listener_name, StreamReaderAdapter(reader), CorkedWriter(writer))

        async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
            if session.username == broker_users.HUB_USER:
                return True
            return bool(await super()._topic_filtering(session, topic, action))

    return Broker
