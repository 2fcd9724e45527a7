"""The REST routes: paths only; endpoints live in one module per collection."""

from __future__ import annotations

from collections.abc import Sequence

from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match, Mount, Route, Router
from starlette.types import Receive, Scope, Send

from server.errors import API_PATH
from server.http import consumers, history, meta, resource_bundles, resources


class IndexedRouter(Router):
    """A router that finds the routes of a path without parameters by lookup (a collection's list and create, the
    busiest), where Starlette's tries every route in turn, ~1 µs each; any other path goes the usual way.

    A path is looked up only when no route with parameters also matches it, so it finds what the scan would."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        super().__init__(routes=routes)
        literal: dict[str, list[Route]] = {}
        for route in routes:
            if isinstance(route, Route) and not route.param_convertors:
                literal.setdefault(route.path, []).append(route)
        templated = [r for r in routes if not (isinstance(r, Route) and not r.param_convertors)]
        self.literal = {
            path: found
            for path, found in literal.items()
            if not any(isinstance(r, Route) and r.path_regex.match(path) for r in templated)
        }

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.literal.get(get_route_path(scope)) if scope["type"] == "http" else None
        if not found:
            await super().app(scope, receive, send)
            return
        scope.setdefault("router", self)
        partial: tuple[Route, Scope] | None = None
        for route in found:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                partial = route, child_scope
                break
            if match is Match.PARTIAL and partial is None:
                partial = route, child_scope  # NB: the path, not the method: 405, as Starlette answers it
        assert partial is not None  # NB: the path is the routes' own, so each matches it at least partially
        route, child_scope = partial
        scope["route"] = route
        scope.update(child_scope)
        await route.handle(scope, receive, send)


routes = [
    Route("/api/maestro", meta.api, methods=["GET"]),
    Mount(
        API_PATH,
        app=IndexedRouter(
            [
                Route("/", meta.api_version, methods=["GET"]),
                Route("/openapi", meta.openapi_document, methods=["GET"]),
                Route("/errors", meta.list_errors, methods=["GET"]),
                Route("/errors/{id}", meta.get_error, methods=["GET"]),
                Route("/consumers", consumers.list_consumers, methods=["GET"]),
                Route("/consumers", consumers.create_consumer, methods=["POST"]),
                Route("/consumers/{id}", consumers.get_consumer, methods=["GET"]),
                Route("/consumers/{id}", consumers.patch_consumer, methods=["PATCH"]),
                Route("/consumers/{id}", consumers.delete_consumer, methods=["DELETE"]),
                Route("/resources", resources.list_resources, methods=["GET"]),
                Route("/resources", resources.create_resource, methods=["POST"]),
                Route("/resources/{id}", resources.get_resource, methods=["GET"]),
                Route("/resources/{id}", resources.patch_resource, methods=["PATCH"]),
                Route("/resources/{id}", resources.delete_resource, methods=["DELETE"]),
                Route("/resources/{id}/history", history.resource_history, methods=["GET"]),
                Route("/resource-bundles", resource_bundles.list_bundles, methods=["GET"]),
                Route("/resource-bundles", resource_bundles.create_bundle, methods=["POST"]),
                Route("/resource-bundles/{id}", resource_bundles.get_bundle, methods=["GET"]),
                Route("/resource-bundles/{id}", resource_bundles.replace_bundle, methods=["PUT"]),
                Route("/resource-bundles/{id}", resource_bundles.delete_bundle, methods=["DELETE"]),
                Route("/resource-bundles/{id}/history", history.bundle_history, methods=["GET"]),
            ]
        ),
    ),
]
