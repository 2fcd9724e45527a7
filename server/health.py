"""The health-check and metrics listeners, apart from the REST port as upstream serves them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server import worker_metrics
from server.errors import DatabaseUnavailable
from server.http.access_log import AccessLog

Readiness = Callable[[], Awaitable[bool]]


def health_app(ready: Readiness) -> Starlette:
    """``/healthcheck``: 200 when ``ready()`` (DB reachable, instance registered), 503 when not (also while the
    database is unavailable), 500 on any other error. ``/livez``: 200 while the process serves requests; it never
    touches the database."""

    async def healthcheck(request: Request) -> Response:
        try:
            ok = await ready()
        except DatabaseUnavailable:
            return JSONResponse({"status": "not ready", "reason": "database unavailable"}, status_code=503)
        except Exception:
            return JSONResponse({"status": "error"}, status_code=500)
        return JSONResponse({"status": "ok"} if ok else {"status": "not ready"}, status_code=200 if ok else 503)

    async def livez(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[Route("/healthcheck", healthcheck), Route("/livez", livez)], middleware=[Middleware(AccessLog)]
    )


def metrics_app(workers: Callable[[], Awaitable[Sequence[worker_metrics.Snapshot]]] | None = None) -> Starlette:
    """``/metrics``: this process's metrics; with ``workers`` (the REST worker processes' answers, see
    :mod:`server.worker_metrics`) their REST request metrics summed in."""

    async def metrics(request: Request) -> Response:
        exposed = REGISTRY if workers is None else worker_metrics.registry(await workers())
        return Response(generate_latest(exposed), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", metrics)], middleware=[Middleware(AccessLog)])
