"""Who may use the embedded broker, and for which topics.

The user file (``<data dir>/mqtt/users``, mode 0600) holds one line per user: ``name:consumer:hash``, where
``consumer`` is ``*`` for the hub and the hash is PBKDF2-SHA256 with a per-user salt. The hub's own user
(``maestro``) is created with a random password at the first start; its password is kept next to the file
(``hub.password``, 0600) so the hub can reconnect after a restart. ``maestro agent-config`` adds or renews an
agent's user and prints its broker config with the fresh password (only ever shown then).

An agent's user may read only its consumer's ``sourceevents`` (and ``sourcebroadcast``) and write only its
``agentevents`` (and ``agentbroadcast``): it cannot see another consumer's manifests nor forge its status. It may
connect only with a client id of its consumer, so it cannot take over the hub's connection either.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Final, Literal

HUB_USER: Final = "maestro"
HUB: Final = "*"
ITERATIONS: Final = 20_000

Action = Literal["subscribe", "publish", "receive"]


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    consumer: str
    """The consumer this user's agent serves, or ``*`` for the hub."""
    hash: str


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS)
    return f"pbkdf2_sha256${ITERATIONS}${salt.hex()}${digest.hex()}"


def verify(password: str, stored: str) -> bool:
    try:
        scheme, rounds, salt, digest = stored.split("$")
        expected = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(rounds))
    except ValueError:
        return False
    return scheme == "pbkdf2_sha256" and hmac.compare_digest(expected.hex(), digest)


class Users:
    """The user file of one data directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "users"
        self.hub_password_path = directory / "hub.password"
        self._cache: tuple[float, dict[str, User]] | None = None

    def load(self) -> dict[str, User]:
        """The users, re-read when the file changed (``agent-config`` may add one while the broker runs)."""
        try:
            stamp = self.path.stat().st_mtime
        except FileNotFoundError:
            return {}
        if self._cache is None or self._cache[0] != stamp:
            users: dict[str, User] = {}
            for line in self.path.read_text().splitlines():
                parts = line.strip().split(":")
                if len(parts) == 3 and not line.startswith("#"):
                    users[parts[0]] = User(name=parts[0], consumer=parts[1], hash=parts[2])
            self._cache = (stamp, users)
        return self._cache[1]

    def authenticate(self, name: str | None, password: str | None) -> User | None:
        user = self.load().get(name or "")
        if user is None or password is None or not verify(password, user.hash):
            return None
        return user

    def put(self, name: str, consumer: str, password: str) -> None:
        """Add or replace a user (atomically: write a new file, then rename it over the old one)."""
        users = dict(self.load())
        users[name] = User(name=name, consumer=consumer, hash=hash_password(password))
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = "".join(f"{u.name}:{u.consumer}:{u.hash}\n" for u in users.values())
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(text)
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.path)
        self._cache = None

    def hub_password(self) -> str:
        """The hub's password: created (with its user) at the first call, the same ever after."""
        if self.hub_password_path.exists() and HUB_USER in self.load():
            return self.hub_password_path.read_text().strip()
        password = secrets.token_urlsafe(24)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.hub_password_path.write_text(password + "\n")
        os.chmod(self.hub_password_path, 0o600)
        self.put(HUB_USER, HUB, password)
        return password

    def new_agent(self, consumer: str) -> tuple[str, str]:
        """A fresh password for ``consumer``'s agent (an older one stops working); returns (user, password)."""
        name = f"{consumer}-agent"
        password = secrets.token_urlsafe(24)
        self.put(name, consumer, password)
        return name, password


def may_use_client_id(user: User, client_id: str) -> bool:
    """An agent's user connects only with client ids of its consumer (``<consumer>-…``, as agents name theirs): it
    cannot take over the hub's client id (the broker would drop the hub's connection for it) or another agent's."""
    return user.consumer == HUB or client_id == user.consumer or client_id.startswith(f"{user.consumer}-")


def allowed(user: User, action: Action, topic: str) -> bool:
    """Whether ``user`` may subscribe to, publish on, or receive from ``topic``."""
    if user.consumer == HUB:
        return True
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "sources" or parts[2] != "consumers":
        return False
    kind = parts[4]
    if action == "publish":
        return parts[3] == user.consumer and kind in ("agentevents", "agentbroadcast")
    if kind == "sourceevents":
        return parts[3] == user.consumer
    # NB: a broadcast filter uses "+" for the consumer; every agent may read source broadcasts.
    return kind == "sourcebroadcast" and parts[3] in (user.consumer, "+")
