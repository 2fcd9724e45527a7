"""``/consumers`` endpoints: parse, call the service, render."""

from __future__ import annotations

import functools

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.http import bodies, listing, presenters, state
from server.services import consumers
from server.services import listing as listing_service


async def list_consumers(request: Request) -> Response:
    db = state.database(request)
    return await listing.respond(
        request,
        kind="Consumer",
        items=functools.partial(listing_service.consumer_items, db),
        rows=functools.partial(listing_service.consumer_page, db),
        present=presenters.consumer,
    )


async def create_consumer(request: Request) -> Response:
    row = await consumers.create(state.database(request), await bodies.json_object(request))
    return JSONResponse(presenters.consumer(row), status_code=201)


async def get_consumer(request: Request) -> Response:
    row = await consumers.get(state.database(request), request.path_params["id"])
    return JSONResponse(presenters.consumer(row))


async def patch_consumer(request: Request) -> Response:
    body = await bodies.json_object(request)
    row = await consumers.patch(state.database(request), request.path_params["id"], body)
    return JSONResponse(presenters.consumer(row))


async def delete_consumer(request: Request) -> Response:
    await consumers.delete(state.database(request), request.path_params["id"])
    return Response(status_code=204)
