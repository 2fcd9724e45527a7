"""The list envelope ``{kind, page, size, total, items}`` shared by every collection (plus ``next`` in a cursor
walk, and only there: upstream's generated Go client refuses an envelope with fields it does not know).

The items arrive as JSON text rendered by PostgreSQL (``fields=`` applied) and are joined into the body as they
are: no row's JSON is decoded or encoded here. A page PostgreSQL cannot render (``projections.ProjectionError``)
is read again as rows and rendered by the presenters.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from server.errors import BadRequest, SearchParseError
from server.http import params
from server.store import keyset, listing, projections, search

Row = TypeVar("Row")


async def respond(
    request: Request,
    *,
    kind: str,
    items: Callable[[listing.ListQuery, Sequence[str] | None], Awaitable[listing.Page[str]]],
    rows: Callable[[listing.ListQuery], Awaitable[listing.Page[Row]]],
    present: Callable[[Row], dict[str, Any]],
) -> Response:
    query = params.list_query(request)
    names = params.fields(request, kind=kind)
    try:
        try:
            found = await items(query, names)
        except projections.ProjectionError:
            found = _rendered(await rows(query), present, names)
    except (listing.OrderByError, keyset.CursorError) as exc:
        raise BadRequest(str(exc)) from None
    except search.SearchError as exc:
        raise SearchParseError(str(exc)) from None
    head: dict[str, Any] = {"kind": f"{kind}List", "page": found.page, "size": len(found.items), "total": found.total}
    if query.after is not None:
        head["next"] = found.next
    text = _dumps(head)[:-1] + ',"items":[' + ",".join(found.items) + "]}"
    return Response(text.encode(), media_type="application/json")


def _rendered(
    found: listing.Page[Row], present: Callable[[Row], dict[str, Any]], names: list[str] | None
) -> listing.Page[str]:
    out = []
    for row in found.items:
        item = present(row)
        out.append(_dumps(item if names is None else params.project(item, names)))
    return listing.Page(out, found.total, found.page, found.next)


def _dumps(value: Any) -> str:
    """As Starlette's ``JSONResponse`` renders."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
