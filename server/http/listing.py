"""The list envelope ``{kind, page, size, total, items}`` shared by every collection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse

from server.errors import BadRequest, SearchParseError
from server.http import params
from server.store import listing, search

Row = TypeVar("Row")


async def respond(
    request: Request,
    *,
    kind: str,
    fetch: Callable[[listing.ListQuery], Awaitable[tuple[Sequence[Row], int]]],
    present: Callable[[Row], dict[str, Any]],
) -> JSONResponse:
    query = params.list_query(request)
    names = params.fields(request, kind=kind)
    try:
        rows, total = await fetch(query)
    except listing.OrderByError as exc:
        raise BadRequest(str(exc)) from None
    except search.SearchError as exc:
        raise SearchParseError(str(exc)) from None
    items = [present(r) for r in rows]
    if names is not None:
        items = [params.project(item, names) for item in items]
    return JSONResponse({"kind": f"{kind}List", "page": query.page, "size": len(items), "total": total, "items": items})
