"""amqtt plugins of the embedded broker: log-in by the user file, and each agent confined to its consumer's topics
(see :mod:`server.dispatch.broker_users`). Imported by amqtt by name, and by the broker when it starts."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from server.dispatch import broker_users

log = logging.getLogger(__name__)

_ACTIONS: dict[Action, broker_users.Action] = {
    Action.SUBSCRIBE: "subscribe",
    Action.PUBLISH: "publish",
    Action.RECEIVE: "receive",
}
_USERS: dict[str, broker_users.Users] = {}
"""The user files of the running brokers, by directory: amqtt builds plugins itself, from their class names."""


def register(users: broker_users.Users) -> str:
    key = str(users.directory)
    _USERS[key] = users
    guard_connects()
    return key


def guard_connects() -> None:
    """Authenticate a client as its CONNECT arrives, before amqtt touches any session.

    amqtt 0.12 handles a CONNECT for a client id that is connected already *before* it authenticates it: a clean
    session deletes the connected client's session, and the connection is then taken over. Anyone able to open a
    TCP connection could drop the hub's link (and make it reconnect and resync every consumer) with a wrong
    password. Refused here, the client gets CONNACK "not authorized" and no session is ever looked at.
    """
    from amqtt import broker as amqtt_broker
    from amqtt.errors import MQTTError
    from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler

    if getattr(amqtt_broker.BrokerProtocolHandler, "maestro_guarded", False):
        return

    class Guarded(BrokerProtocolHandler):  # type: ignore[misc]
        maestro_guarded = True

        @classmethod
        async def init_from_connect(cls, reader: Any, writer: Any, plugins_manager: Any, loop: Any = None) -> Any:
            handler, session = await super().init_from_connect(reader, writer, plugins_manager, loop)
            verdicts = [v for v in (await plugins_manager.map_plugin_auth(session=session)).values() if v is not None]
            if verdicts and all(verdicts):
                return handler, session
            handler.attach(session, reader, writer)
            await handler.mqtt_connack_authorize(False)
            await writer.close()
            raise MQTTError(f"client {session.client_id!r} refused at CONNECT")

    amqtt_broker.BrokerProtocolHandler = Guarded  # NB: amqtt's broker looks the class up in its module.


class _Broadcast(dict[str, Any]):
    """amqtt's queued message (session, topic, data), which it formats into a debug line whether or not that is
    logged: shown by its topic, not by the repr of its payload and session."""

    def __repr__(self) -> str:
        return f"<message on {self.get('topic')!r}>"


def broker_class(base: type[Any]) -> type[Any]:
    """amqtt's ``Broker`` with less work per message: the same checks, packets and deliveries.

    * The hub's own traffic is let through without asking the topic plugins. amqtt checks every PUBLISH the hub
      sends and every message it delivers to the hub by running each topic plugin in a task of its own and waiting
      for them all; the hub's user may use every topic (its consumer is ``*``), so that work always ends in "yes". A
      session has a user name only once :func:`guard_connects` has checked its password, and the hub's user name is
      never an agent's (those end in ``-agent``).
    * A message waiting for its broadcast formats cheaply (:class:`_Broadcast`).
    """

    class Broker(base):  # type: ignore[misc]
        async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
            if session.username == broker_users.HUB_USER:
                return True
            return bool(await super()._topic_filtering(session, topic, action))

        async def _broadcast_message(
            self, session: Session | None, topic: str | None, data: Any, force_qos: int | None = None
        ) -> None:
            broadcast = _Broadcast(session=session, topic=topic, data=data)
            if force_qos is not None:
                broadcast["qos"] = force_qos
            await self._broadcast_queue.put(broadcast)

    return Broker


class UserAuth(BaseAuthPlugin):  # type: ignore[misc]
    """amqtt authentication by the user file (no anonymous clients)."""

    @dataclasses.dataclass
    class Config:
        users: str = ""

    async def authenticate(self, *, session: Session) -> bool | None:
        users = _USERS.get(str(self._get_config_option("users", "")))
        user = users.authenticate(session.username, session.password) if users is not None else None
        if user is None:
            log.warning("embedded MQTT broker refused client %s (user %r)", session.client_id, session.username)
            return False
        if not broker_users.may_use_client_id(user, str(session.client_id)):
            log.warning("embedded MQTT broker refused user %s the client id %r", user.name, session.client_id)
            return False
        return True


class TopicAccess(BaseTopicPlugin):  # type: ignore[misc]
    """amqtt topic check: an agent's user only reaches its own consumer's topics."""

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool | None:
        users = _USERS.get(str(self._get_config_option("users", "")))
        if users is None or session is None or topic is None or action is None:
            return False
        user = users.load().get(session.username or "")
        if user is None:
            return False
        ok = broker_users.allowed(user, _ACTIONS[action], topic)
        if not ok and action != Action.RECEIVE:
            log.warning("embedded MQTT broker refused %s of %s to user %s", _ACTIONS[action], topic, user.name)
        return ok

    @dataclasses.dataclass
    class Config:
        users: str = ""
