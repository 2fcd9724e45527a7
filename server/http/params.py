"""List query parameters: page, size, search, orderBy, fields (upstream semantics, reference §1.3)."""

from __future__ import annotations

import re
from typing import Any, Final

from starlette.requests import Request

from server.errors import BadRequest, SearchParseError
from server.services import resources
from server.store import listing

_INTEGER: Final = re.compile(r"^-?[0-9]{1,20}$")


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # NB: ASCII digits only; Python's int() would also take ' 7', '1_000' and other scripts' digits.
    if not _INTEGER.fullmatch(raw):
        raise BadRequest(f"{name} must be an integer, got {raw!r}")
    return int(raw)


def list_query(request: Request) -> listing.ListQuery:
    page = _int(request, "page", 1)
    if page < 1:
        raise BadRequest("page must be 1 or more")
    size = _int(request, "size", listing.DEFAULT_PAGE_SIZE)
    if size < 0 or size > listing.MAX_PAGE_SIZE:
        size = listing.MAX_PAGE_SIZE
    if (page - 1) * size > 2**62:
        raise BadRequest("page is too large")
    search = request.query_params.get("search", "")
    if "\x00" in search:
        raise SearchParseError("Failed to parse search query: NUL characters are not allowed")
    after = request.query_params.get("after")
    if after is not None:
        if page != 1:
            raise BadRequest("page and after cannot be combined: a cursor walk pages with after=<next> alone")
        if size == 0:
            raise BadRequest("size must be 1 or more with after")
    return listing.ListQuery(
        page=page,
        size=size,
        search=search,
        order_by=request.query_params.get("orderBy", ""),
        after=after,
    )


def fields(request: Request, *, kind: str) -> list[str] | None:
    """The ``fields`` projection (``id`` always included); unknown top-level names are a 400."""
    raw = request.query_params.get("fields")
    if raw is None or not raw.strip():
        return None
    names = [f.strip() for f in raw.split(",") if f.strip()]
    unknown = [n for n in names if n.split(".")[0] not in KNOWN_FIELDS[kind]]
    if unknown:
        raise BadRequest(f"The following field(s) doesn't exist in `{kind}`: {', '.join(unknown)}")
    return names if "id" in names else ["id", *names]


def project(item: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Keep only ``names`` (dot paths, ``x.*`` for a whole sub-object) of a presented item."""
    out: dict[str, Any] = {}
    for name in names:
        path = name.removesuffix(".*").split(".")
        src: Any = item
        dst = out
        for i, key in enumerate(path):
            if not isinstance(src, dict) or key not in src:
                break
            src = src[key]
            if i == len(path) - 1:
                dst[key] = src
            else:
                dst = dst.setdefault(key, {})
    return out


KNOWN_FIELDS: dict[str, frozenset[str]] = {
    "Consumer": frozenset({"id", "kind", "href", "name", "labels", "created_at", "updated_at"}),
    "Resource": frozenset(resources.SINGLE_FIELDS),
    "ResourceBundle": frozenset(resources.BUNDLE_FIELDS),
}
