"""Typed access to what the lifespan puts in ``request.state``: the one place it is untyped."""

from __future__ import annotations

from typing import TypedDict, cast

import databases
from starlette.requests import Request

from server.services.watch import StatusFeed
from server.settings import Settings


class State(TypedDict):
    database: databases.Database
    settings: Settings
    feed: StatusFeed


def database(request: Request) -> databases.Database:
    return cast(databases.Database, request.state.database)


def settings(request: Request) -> Settings:
    return cast(Settings, request.state.settings)


def feed(request: Request) -> StatusFeed:
    return cast(StatusFeed, request.state.feed)


def actor(request: Request) -> str:
    """Who writes, for the spec log: the authenticated subject (the token's ``sub``), else ``anonymous``."""
    user = request.scope.get("user")
    subject = user.get("sub") if isinstance(user, dict) else None
    return subject if isinstance(subject, str) and subject else "anonymous"
