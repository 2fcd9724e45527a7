"""``/resource-bundles`` endpoints: upstream's read and delete, plus our POST and PUT."""

from __future__ import annotations

import functools

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.http import bodies, listing, presenters, state, watch
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
    row = await resources.create_bundle(state.database(request), body, source=state.settings(request).source_id)
    return JSONResponse(presenters.bundle(row), status_code=201)


async def get_bundle(request: Request) -> Response:
    row = await resources.get(state.database(request), request.path_params["id"])
    return JSONResponse(presenters.bundle(row))


async def replace_bundle(request: Request) -> Response:
    body = await bodies.json_object(request)
    row = await resources.replace_bundle(state.database(request), request.path_params["id"], body)
    return JSONResponse(presenters.bundle(row))


async def delete_bundle(request: Request) -> Response:
    # As upstream: deleting an unknown or already-deleting bundle is a successful no-op.
    await resources.mark_deleting(state.database(request), request.path_params["id"])
    return Response(status_code=204)
