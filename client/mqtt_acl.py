"""A Mosquitto ACL that confines each agent to its own consumer's topics (pure: no I/O, reusable).

Each agent logs in as ``<consumer>-agent`` and may only read its ``sourceevents`` (the specs the hub sends it)
and write its ``agentevents`` (its statuses and resyncs): another cluster's credentials can neither read this
cluster's manifests (Secrets travel in them) nor forge its status. The hub's user reads and writes every
consumer's topics of its source (``+``; a shared subscription ``$share/<group>/…`` is checked against the
topic after the prefix). Anonymous clients get nothing: the output says how to turn them off and make the
password file with ``mosquitto_passwd``.

The whole output is a valid ACL file (the instructions are comments), so ``maestro mqtt acl ... > acl`` works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from protocol import topics

DEFAULT_SOURCE: Final = "maestro"
DEFAULT_HUB_USER: Final = "maestro"
PASSWORD_FILE: Final = "/etc/mosquitto/passwd"
ACL_FILE: Final = "/etc/mosquitto/acl"


def agent_user(consumer: str) -> str:
    """The MQTT user name of ``consumer``'s agent."""
    return f"{consumer}-agent"


def render(
    consumers: Sequence[str],
    *,
    source: str = DEFAULT_SOURCE,
    hub_user: str = DEFAULT_HUB_USER,
    password_file: str = PASSWORD_FILE,
    acl_file: str = ACL_FILE,
) -> str:
    """The ACL file's text; raises :class:`protocol.errors.ProtocolError` for a name no topic may hold."""
    names = list(dict.fromkeys(consumers))
    every = topics.WILDCARD
    lines = [
        f"# Mosquitto ACL for Maestro source {source!r}: the hub ({hub_user}) and {len(names)} agent(s).",
        "#",
        "# mosquitto.conf:",
        "#   allow_anonymous false",
        f"#   password_file {password_file}",
        f"#   acl_file {acl_file}",
        "#   use_username_as_clientid true",
        "# (each client's id is then its user name: one agent's credentials cannot take over the hub's connection",
        "#  or another agent's; give each hub replica a user of its own, listed here, and set its --client-id to it)",
        "#",
        "# The password file (one password per user; -c creates the file, so only on the first line):",
        f"#   mosquitto_passwd -c -b {password_file} {hub_user} 'HUB-PASSWORD'",
    ]
    lines += [f"#   mosquitto_passwd -b {password_file} {agent_user(c)} '{c.upper()}-PASSWORD'" for c in names]
    lines += [
        "# then reload mosquitto (SIGHUP). Each agent's broker config carries its user name and password.",
        "",
        f"user {hub_user}",
        f"topic readwrite {topics.agent_subscription(source, every)}",
        f"topic readwrite {topics.server_subscription(source)}",
    ]
    for consumer in names:
        lines += [
            "",
            f"user {agent_user(consumer)}",
            f"topic read {topics.source_events(source, consumer)}",
            f"topic write {topics.agent_events(source, consumer)}",
        ]
    return "\n".join(lines) + "\n"
