"""The list envelope ``{kind, page, size, total, items}`` shared by every collection (plus ``next`` in a cursor
walk, and only there: upstream's generated Go client refuses an envelope with fields it does not know)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse

from server.errors import BadRequest, SearchParseError
from server.http import params
from server.store import keyset, listing, search

Row = TypeVar("Row")


async def respond(
    request: Request,
    *,
    kind: str,
    fetch: Callable[[listing.ListQuery], Awaitable[listing.Page[Row]]],
    present: Callable[[Row], dict[str, Any]],
) -> JSONResponse:
    query = params.list_query(request)
    names = params.fields(request, kind=kind)
    try:
        found = await fetch(query)
    except (listing.OrderByError, keyset.CursorError) as exc:
        raise BadRequest(str(exc)) from None
    except search.SearchError as exc:
        raise SearchParseError(str(exc)) from None
    items = [present(r) for r in found.items]
    if names is not None:
        items = [params.project(item, names) for item in items]
    body: dict[str, Any] = {"kind": f"{kind}List", "page": found.page, "size": len(items), "total": found.total}
    if query.after is not None:
        body["next"] = found.next
    body["items"] = items
    return JSONResponse(body)
