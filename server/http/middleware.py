"""Pure ASGI middleware: :class:`Edge` (operation ids, relative redirects, request metrics, the access log) and
bearer-token authentication."""

from __future__ import annotations

import re
import time
from typing import Any, Final
from urllib.parse import urlsplit

from prometheus_client import Counter, Histogram
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import auth
from server.http import access_log
from server.http.errors import OPERATION_ID_HEADER
from server.services import validation

REQUESTS = Counter(
    "rest_api_inbound_request_count", "REST requests by route template and status code", ["method", "path", "code"]
)
LATENCY = Histogram(
    "rest_api_inbound_request_duration",
    "REST request latency in seconds by route template",
    ["method", "path", "code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

_VALID_OPERATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_OPERATION_ID_KEY: Final = OPERATION_ID_HEADER.lower().encode("latin-1")


_SERIES: dict[tuple[str, str, str], tuple[Any, Any]] = {}
"""The metrics' children by labels: ``labels()`` takes a lock and builds its key on every call."""


def _count(scope: Scope, status: int, seconds: float) -> None:
    """Count and time a request by route template (``/api/maestro/v1/consumers/{id}``), never by raw path."""
    # NB: only a matched Route names a template; a Mount alone (a path under it that matched nothing) would read as
    # its prefix twice, and raw paths would make the label set unbounded.
    route: Any = scope.get("route")
    template = scope.get("root_path", "") + route.path if isinstance(route, Route) else "unmatched"
    labels = (scope["method"], template, str(status))
    series = _SERIES.get(labels)
    if series is None:
        series = _SERIES[labels] = (REQUESTS.labels(*labels), LATENCY.labels(*labels))
    series[0].inc()
    series[1].observe(seconds)


def _operation_id(scope: Scope) -> str:
    """The client's ``X-Operation-ID`` when it is sane, else a new one."""
    for name, value in scope["headers"]:
        if name == _OPERATION_ID_KEY:  # NB: the first one, as Headers.get reads it
            given = value.decode("latin-1")
            return given if _VALID_OPERATION_ID.fullmatch(given) else validation.new_uuid_hex()
    return validation.new_uuid_hex()


def _relative(headers: MutableHeaders) -> None:
    """Make a redirect's ``Location`` relative (``/api/maestro/v1/``).

    Starlette's trailing-slash redirect builds an absolute URL from the request's ``Host`` header, so whoever
    controls that header (a request smuggled through a proxy, a poisoned cache) chooses where clients are sent.
    We only ever redirect within this server, so the path is all a client needs.
    """
    if location := headers.get("location"):
        parts = urlsplit(location)
        # NB: "//host/path" is as absolute as "http://host/path"; one leading slash is kept.
        path = "/" + parts.path.lstrip("/")
        headers["location"] = path + (f"?{parts.query}" if parts.query else "")


class Edge:
    """What every REST request gets, in one layer (one ``send`` wrapper, where four layers had one each): its
    operation id (a sane ``X-Operation-ID`` the client sent, or a new one) in ``scope["operation_id"]`` and on the
    response, relative redirects, the request metrics and the access log line (:mod:`server.http.access_log`).

    The metrics and the log record the status sent, or 500 when the app raised before a response started.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        op = scope["operation_id"] = _operation_id(scope)
        start = time.perf_counter()
        status = 500

        async def respond(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                if 300 <= status < 400:
                    _relative(headers)
                headers[OPERATION_ID_HEADER] = op
            await send(message)

        try:
            await self.app(scope, receive, respond)
        finally:
            seconds = time.perf_counter() - start
            _count(scope, status, seconds)
            if (level := access_log.level(scope)) is not None:
                access_log.write(scope, level, status, seconds)


PUBLIC_PATHS = re.compile(r"^/api/maestro/?$|^/api/maestro/v1/?$|^/api/maestro/v1/(openapi|errors)(/.*)?$", re.DOTALL)
MISSING_TOKEN = "Request doesn't contain the 'Authorization' header or the 'cs_jwt' cookie"
COOKIE: Final = "cs_jwt"


def _cookie_token(cookie: str | None) -> str | None:
    for part in (cookie or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


class Authentication:
    """Require a valid bearer JWT (header or ``cs_jwt`` cookie) outside the public paths.

    ``scope["credentials"]`` records where the token came from: a browser sends the cookie on requests other sites
    start, so :mod:`server.http.bodies` holds cookie-authenticated writes to stricter rules (CSRF).
    """

    def __init__(self, app: ASGIApp, *, verifier: auth.Verifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or PUBLIC_PATHS.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        token = auth.bearer(headers.get("authorization"))
        scope["credentials"] = "bearer"
        if token is None and (token := _cookie_token(headers.get("cookie"))) is not None:
            scope["credentials"] = "cookie"
        if token is None:
            reason = MISSING_TOKEN
        else:
            try:
                scope["user"] = await self.verifier.verify(token)
            except auth.InvalidTokenError as exc:
                reason = str(exc)
            else:
                await self.app(scope, receive, send)
                return
        op = scope.get("operation_id")
        body = {"kind": "Error", "id": "401", "href": "/api/maestro/errors/401", "code": "API-401", "reason": reason}
        if op:
            body["operation_id"] = op
        await JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
