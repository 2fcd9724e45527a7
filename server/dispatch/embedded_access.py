"""amqtt plugins of the embedded broker: log-in by the user file, and each agent confined to its consumer's topics
(see :mod:`server.dispatch.broker_users`). Imported by amqtt by name, and by the broker when it starts."""

from __future__ import annotations

import dataclasses
import logging

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
    return key


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
        return user is not None


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
