"""The access log: one line per HTTP request, when its response is done.

``GET /api/maestro/v1/resource-bundles/{id} 200 3.1ms op=5f0c…``: method, route template (never the raw path, so
ids stay out of the text and lines group by route), status, duration in milliseconds and the operation id the
client also sees (``X-Operation-ID``). At INFO, except the probes (``/healthcheck``, ``/livez``, ``/metrics``),
which Kubernetes and Prometheus call every few seconds: those are DEBUG.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from server.http.middleware import observe

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


class AccessLog:
    """Pure ASGI middleware; place it inside the one that sets ``scope["operation_id"]``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        level = logging.DEBUG if scope["path"] in PROBES else logging.INFO
        if not log.isEnabledFor(level):
            await self.app(scope, receive, send)
            return

        def done(status: int, seconds: float) -> None:
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

        await observe(self.app, scope, receive, send, done)
