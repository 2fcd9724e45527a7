"""The access log: one line per HTTP request, when its response is done.

``GET /api/maestro/v1/resource-bundles/{id} 200 3.1ms op=5f0c…``: method, route template (never the raw path, so
ids stay out of the text and lines group by route), status, duration in milliseconds and the operation id the
client also sees (``X-Operation-ID``). At INFO, except the probes (``/healthcheck``, ``/livez``, ``/metrics``),
which Kubernetes and Prometheus call every few seconds: those are DEBUG.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("server.http.access")

PROBES = frozenset({"/healthcheck", "/livez", "/metrics"})


def _template(scope: Scope) -> str:
    route: Any = scope.get("route")
    if isinstance(route, Route):
        return str(scope.get("root_path", "")) + route.path
    # NB: refused before routing (a 401 from the authentication middleware): match the app's routes here.
    app: Any = scope.get("app")
    if (found := _match(getattr(getattr(app, "router", None), "routes", []), scope)) is not None:
        return found
    # NB: no route matches (a 404): the raw path, percent-encoded so it cannot forge a line of its own.
    return quote(str(scope.get("path", "")), safe="/{}")[:200]


def _match(routes: Sequence[BaseRoute], scope: Scope) -> str | None:
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, Route):
            return str({**scope, **child}.get("root_path", "")) + route.path
        if isinstance(route, Mount) and (found := _match(route.routes, {**scope, **child})) is not None:
            return found
    return None


def level(scope: Scope) -> int | None:
    """The level of the line for ``scope``'s request, or None when that level is not logged."""
    level = logging.DEBUG if scope["path"] in PROBES else logging.INFO
    return level if log.isEnabledFor(level) else None


def write(scope: Scope, level: int, status: int, seconds: float) -> None:
    """Log the line of ``scope``'s request, answered ``status`` after ``seconds``."""
    elapsed = round(seconds * 1000, 1)
    method, path, op = scope["method"], _template(scope), scope.get("operation_id", "-")
    log.log(
        level,
        "%s %s %d %.1fms op=%s",
        method,
        path,
        status,
        elapsed,
        op,
        extra={"method": method, "path": path, "status": status, "duration_ms": elapsed, "operation_id": op},
    )


class AccessLog:
    """Pure ASGI middleware: the access log alone (the probe and metrics servers; the REST API's requests are
    logged by :class:`server.http.middleware.Edge`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (at := level(scope)) is None:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # NB: when the app raises before a response starts

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            write(scope, at, status, time.perf_counter() - start)
