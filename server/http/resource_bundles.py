"""``/resource-bundles`` endpoints: upstream's read and delete, plus our POST and PUT."""

from __future__ import annotations

import functools

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.http import bodies, history, listing, presenters, state, watch
from server.services import listing as listing_service
from server.services import resources


async def list_bundles(request: Request) -> Response:
    if request.query_params.get("watch", "").lower() in ("true", "1"):
        return await watch.watch_bundles(request)
    db = state.database(request)
    return await listing.respond(
        request,
        kind="ResourceBundle",
        items=functools.partial(listing_service.resource_items, db, type="Bundle"),
        rows=functools.partial(listing_service.resource_page, db, type="Bundle"),
        present=presenters.bundle,
    )


async def create_bundle(request: Request) -> Response:
    body = await bodies.json_object(request)
    created = await resources.create_bundle(
        state.database(request), body, source=state.settings(request).transport.source_id, actor=state.actor(request)
    )
    return JSONResponse(presenters.bundle(created.row), status_code=201 if created.new else 200)


async def get_bundle(request: Request) -> Response:
    if history.version_asked(request):
        return await history.at_version(request, expect_type=None, present=presenters.bundle)
    row = await resources.get(state.database(request), request.path_params["id"])
    return JSONResponse(presenters.bundle(row))


async def replace_bundle(request: Request) -> Response:
    body = await bodies.json_object(request)
    row = await resources.replace_bundle(
        state.database(request), request.path_params["id"], body, actor=state.actor(request)
    )
    return JSONResponse(presenters.bundle(row))


async def delete_bundle(request: Request) -> Response:
    # As upstream: deleting an unknown or already-deleting bundle is a successful no-op.
    await resources.mark_deleting(state.database(request), request.path_params["id"], actor=state.actor(request))
    return Response(status_code=204)
