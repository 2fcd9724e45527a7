"""The development broker: amqtt in-process, used when no ``--mqtt-config-file`` is given.

amqtt 0.12 speaks MQTT 3.1.1 only, so clients use structured mode and there are no shared subscriptions (the hub
subscribes in broadcast mode). Every client must log in with a user of :mod:`server.dispatch.broker_users` (the hub's
own, created at the first start, or an agent's from ``maestro agent-config``), and an agent's user reaches only its
consumer's topics: even on one host, nobody reads another consumer's manifests or forges its status.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from protocol import mqtt_config
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
        self._broker = embedded_access.broker_class(Broker)(
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
