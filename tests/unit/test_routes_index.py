"""The REST router's lookup of paths without parameters (server/http/routes.py) routes as Starlette's scan does."""

from __future__ import annotations

import itertools

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, Router

from server.errors import API_PATH
from server.http import routes

PATHS = ["/", "", "/openapi", "/errors", "/errors/7", "/consumers", "/consumers/", "/consumers/c1", "/resources",
         "/resources/r1", "/resources/r1/history", "/resource-bundles", "/resource-bundles/b1",
         "/resource-bundles/b1/history", "/resource-bundles/b1/nope", "/nope"]  # fmt: skip
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def echo(route: Route) -> Route:
    """``route`` with an endpoint that names it (and the path parameters it read)."""

    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"{route.path} {sorted(route.methods or [])} {request.path_params}")

    return Route(route.path, endpoint, methods=list(route.methods or []))


def app(indexed: bool) -> Starlette:
    (mount,) = [r for r in routes.routes if isinstance(r, Mount)]
    inner = [echo(r) for r in mount.routes if isinstance(r, Route)]
    router = routes.IndexedRouter(inner) if indexed else Router(routes=inner)
    return Starlette(routes=[Mount(API_PATH, app=router)])


async def test_every_method_and_path_is_routed_as_by_the_scan() -> None:
    answers = []
    for indexed in (False, True):
        transport = httpx.ASGITransport(app=app(indexed))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers.append(
                [
                    (r.status_code, r.headers.get("allow"), r.headers.get("location"), r.text)
                    for method, path in itertools.product(METHODS, PATHS)
                    for r in [await client.request(method, API_PATH + path)]
                ]
            )
    scanned, looked_up = answers
    assert looked_up == scanned
    assert (200, None, None, "/resource-bundles ['POST'] {}") in looked_up  # NB: the grid reaches the routes
    assert sum(status == 405 for status, *_ in looked_up) > 10


def test_only_paths_no_template_also_matches_are_looked_up() -> None:
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse("")

    router = routes.IndexedRouter([Route("/{name}", endpoint), Route("/all", endpoint), Route("/items", endpoint)])
    assert set(router.literal) == set()  # NB: "/{name}" comes first and matches both: the scan must decide
    router = routes.IndexedRouter([Route("/items", endpoint), Route("/items/{id}", endpoint)])
    assert set(router.literal) == {"/items"}
