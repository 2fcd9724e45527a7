"""The REST application factory and its lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import databases
from starlette.applications import Starlette
from starlette.middleware import Middleware

from server import auth
from server.http import errors, middleware
from server.http.routes import routes
from server.http.state import State
from server.services import read_ahead, watch
from server.settings import Settings
from server.store import db as store_db

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, database: databases.Database | None = None, feed: watch.StatusFeed | None = None
) -> Starlette:
    """The REST API. With ``database`` given, the caller owns its connection; otherwise the lifespan does.
    ``feed`` wakes status watchers; without one (no LISTEN wired) watchers poll every second."""
    feed = feed or watch.StatusFeed(poll_interval=1.0)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        if database is not None:
            yield {"database": database, "settings": settings, "feed": feed}
            await read_ahead.of(database).settled()  # NB: before the owner disconnects the pool under them
            return
        if not settings.database.db_url:
            raise RuntimeError("create_app needs settings.database.db_url or a database")
        owned = store_db.database(settings.database.db_url, max_size=settings.database.db_max_open_connections)
        await owned.connect()
        try:
            yield {"database": owned, "settings": settings, "feed": feed}
            await read_ahead.of(owned).settled()
        finally:
            await owned.disconnect()

    stack = [Middleware(middleware.Edge)]
    if (verifier := auth.verifier(settings)) is not None:
        stack.append(Middleware(middleware.Authentication, verifier=verifier))
    elif settings.auth.disable_auth:
        log.warning("REST authentication is off (--disable-auth): anyone who reaches the REST port reads and writes")
    else:
        log.warning("REST authentication is off: no --jwk-cert-file or --jwk-cert-url is configured")
    return Starlette(routes=routes, middleware=stack, exception_handlers=errors.HANDLERS, lifespan=lifespan)
