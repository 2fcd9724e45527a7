"""``GET …/resources/{id}/history``, ``GET …/resource-bundles/{id}/history`` and ``GET …/{id}?version=N``."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.errors import API_PATH, BadRequest
from server.http import presenters, state
from server.services import history
from server.services.validation import MAX_VERSION
from server.store.rows import ResourceRow, ResourceType

_DIGITS: Final = re.compile(r"[0-9]{1,19}")
Present = Callable[[ResourceRow], dict[str, Any]]


def _natural(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return int(raw)


def _entry(entry: history.Entry, present: Present) -> dict[str, Any]:
    spec = present(entry.resource)
    return {
        "cursor": str(entry.cursor),
        "event": entry.event,
        "version": entry.resource.version,
        "actor": entry.actor,
        "time": presenters.timestamp(entry.created_at),
        "spec": spec,
        "statuses": [
            {
                "type": s.type,
                "time": presenters.timestamp(s.created_at),
                # NB: as the resource's GET shows a status.
                "status": present(dataclasses.replace(entry.resource, status=s.status)).get("status"),
            }
            for s in entry.statuses
        ],
    }


async def _history(
    request: Request, *, kind: str, collection: str, expect_type: ResourceType | None, present: Present
) -> Response:
    rid = request.path_params["id"]
    after = _natural(request, "after", default=0, low=0, high=2**63 - 1)
    size = _natural(request, "size", default=history.DEFAULT_SIZE, low=1, high=history.MAX_SIZE)
    page = await history.entries(state.database(request), rid, after=after, size=size, expect_type=expect_type)
    body: dict[str, Any] = {
        "kind": kind,
        "id": rid,
        "href": f"{API_PATH}/{collection}/{rid}/history",
        "size": len(page.items),
        "items": [_entry(e, present) for e in page.items],
    }
    if page.next is not None:
        body["next"] = str(page.next)
    return JSONResponse(body)


async def resource_history(request: Request) -> Response:
    return await _history(
        request, kind="ResourceHistory", collection="resources", expect_type="Single", present=presenters.resource
    )


async def bundle_history(request: Request) -> Response:
    return await _history(
        request,
        kind="ResourceBundleHistory",
        collection="resource-bundles",
        expect_type=None,
        present=presenters.bundle,
    )


def version_asked(request: Request) -> bool:
    return "version" in request.query_params


async def at_version(request: Request, *, expect_type: ResourceType | None, present: Present) -> Response:
    """``GET …/{id}?version=N``: that version's spec (no status) from the event log."""
    version = _natural(request, "version", default=0, low=1, high=MAX_VERSION)
    row = await history.at_version(state.database(request), request.path_params["id"], version, expect_type=expect_type)
    return JSONResponse(present(row))
