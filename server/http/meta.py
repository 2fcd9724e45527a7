"""API metadata, the error catalog and the OpenAPI document: public, no database."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server import errors
from server.errors import API_PATH, NotFound
from server.http import openapi

_DOCUMENT = openapi.document()


async def api(request: Request) -> Response:
    return JSONResponse(
        {
            "id": "maestro",
            "kind": "API",
            "href": "/api/maestro",
            "versions": [{"id": "v1", "kind": "APIVersion", "href": API_PATH}],
        }
    )


async def api_version(request: Request) -> Response:
    collections = [
        {"id": name, "kind": kind, "href": f"{API_PATH}/{name}"}
        for name, kind in (
            ("consumers", "ConsumerList"),
            ("resources", "ResourceList"),
            ("resource-bundles", "ResourceBundleList"),
        )
    ]
    return JSONResponse({"id": "v1", "kind": "APIVersion", "href": API_PATH, "collections": collections})


async def openapi_document(request: Request) -> Response:
    return JSONResponse(_DOCUMENT)


def _present(d: errors.ErrorDefinition) -> dict[str, object]:
    return {
        "kind": "Error",
        "id": str(d.code),
        "href": errors.href(d.code),
        "code": f"maestro-{d.code}",
        "reason": d.reason,
    }


async def list_errors(request: Request) -> Response:
    items = [_present(d) for d in errors.CATALOG.values()]
    return JSONResponse({"kind": "ErrorList", "page": 1, "size": len(items), "total": len(items), "items": items})


async def get_error(request: Request) -> Response:
    raw = request.path_params["id"]
    definition = errors.CATALOG.get(int(raw)) if raw.isdigit() and len(raw) < 6 else None
    if definition is None:
        raise NotFound(f"Error with id='{raw}' not found")
    return JSONResponse(_present(definition))
