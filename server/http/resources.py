"""``/resources`` endpoints: single-manifest resources (the seed README's shape)."""

from __future__ import annotations

import functools

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.errors import NotFound
from server.http import bodies, history, listing, presenters, state
from server.services import listing as listing_service
from server.services import resources


async def list_resources(request: Request) -> Response:
    db = state.database(request)
    return await listing.respond(
        request,
        kind="Resource",
        items=functools.partial(listing_service.resource_items, db, type="Single"),
        rows=functools.partial(listing_service.resource_page, db, type="Single"),
        present=presenters.resource,
    )


async def create_resource(request: Request) -> Response:
    body = await bodies.json_object(request)
    created = await resources.create_single(
        state.database(request), body, source=state.settings(request).transport.source_id, actor=state.actor(request)
    )
    return JSONResponse(presenters.resource(created.row), status_code=201 if created.new else 200)


async def get_resource(request: Request) -> Response:
    if history.version_asked(request):
        return await history.at_version(request, expect_type="Single", present=presenters.resource)
    row = await resources.get(state.database(request), request.path_params["id"], expect_type="Single")
    return JSONResponse(presenters.resource(row))


async def patch_resource(request: Request) -> Response:
    body = await bodies.json_object(request)
    row = await resources.patch_single(
        state.database(request), request.path_params["id"], body, actor=state.actor(request)
    )
    return JSONResponse(presenters.resource(row))


async def delete_resource(request: Request) -> Response:
    rid = request.path_params["id"]
    if not await resources.mark_deleting(
        state.database(request), rid, expect_type="Single", actor=state.actor(request)
    ):
        raise NotFound(f"Resource with id='{rid}' not found")
    return Response(status_code=204)
