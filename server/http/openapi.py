"""The OpenAPI 3.0 document served at ``/api/maestro/v1/openapi``: the contract the tests fuzz.

It describes exactly the routes in :mod:`server.http.routes`. Request schemas are strict
(``additionalProperties: false``) because the server rejects unknown fields.
"""

from __future__ import annotations

from typing import Any, Final

from server.services import validation
from server.services.validation import MAX_VERSION, PROPAGATION_POLICIES, UPDATE_STRATEGIES

_LABEL: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN: Final = rf"{_LABEL}(\.{_LABEL})*"
LABEL: Final = rf"^{_LABEL}$"
SUBDOMAIN: Final = rf"^{_SUBDOMAIN}$"
LABEL_VALUE: Final = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LABEL_KEY: Final = rf"^({_SUBDOMAIN}/)?([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Any], *, required: tuple[str, ...] = (), strict: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    if strict:
        out["additionalProperties"] = False
    return out


TIME: Final = {"type": "string", "format": "date-time"}
STR: Final = {"type": "string"}
# NB: request schemas must never be stricter than the server (it would accept what the document forbids), and
# are as close to its checks as JSON Schema allows. Rules it cannot express (a manifest's identity is unique in a
# bundle, consumer_name names an existing consumer, a label key's name part is at most 63 characters) are only
# in the server, which answers them with 400.
LABELS: Final = {
    "type": "object",
    "nullable": True,
    "propertyNames": {"pattern": LABEL_KEY, "maxLength": 317},
    "additionalProperties": {"type": "string", "pattern": LABEL_VALUE, "maxLength": 63},
}
STRING_MAP: Final = {"type": "object", "additionalProperties": {"type": "string"}}
FORBIDDEN_METADATA: Final = {"anyOf": [{"required": [k]} for k in validation.FORBIDDEN_METADATA]}
MANIFEST: Final = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata"],
    "properties": {
        "apiVersion": {"type": "string", "pattern": r"^[^ ]+$"},
        "kind": {"type": "string", "minLength": 1},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 253},
                "namespace": {"type": "string", "nullable": True, "pattern": r"^$|" + LABEL, "maxLength": 63},
                "labels": LABELS,
                "annotations": STRING_MAP,
                "finalizers": {"type": "array", "items": {"type": "string", "minLength": 1}},
            },
            "not": FORBIDDEN_METADATA,
        },
    },
}
UPDATE_STRATEGY: Final = _obj(
    {"type": {"type": "string", "enum": list(UPDATE_STRATEGIES)}, "serverSideApply": {"type": "object"}}, strict=True
)
MANIFEST_CONFIG: Final = _obj(
    {
        "resourceIdentifier": _obj({"resource": STR, "name": STR}),
        "updateStrategy": {**UPDATE_STRATEGY, "nullable": True},
        "feedbackRules": {"type": "array"},
    },
    required=("resourceIdentifier",),
)


def _delete_option(policies: tuple[str, ...]) -> dict[str, Any]:
    return _obj(
        {
            "propagationPolicy": {"type": "string", "enum": list(policies)},
            "selectivelyOrphans": {},
            "ttlSecondsAfterFinished": {},
        },
        strict=True,
    )


DELETE_OPTION: Final = _delete_option(PROPAGATION_POLICIES)
SINGLE_DELETE_OPTION: Final = _delete_option(("Foreground", "Orphan"))
VERSION: Final = {"type": "integer", "minimum": 0, "maximum": MAX_VERSION}
EMPTY_OR: Final = {"type": "string", "maxLength": 0}
ID_FOR_CREATE: Final = {
    "type": "string",
    "nullable": True,
    "anyOf": [EMPTY_OR, {"format": "uuid"}],
    "description": "Chosen by the client to make the create idempotent: the same request again returns the"
    " resource the first one created (200); a different one under this id is a 409. Empty or absent: the hub"
    " picks one.",
}
# Read-only fields of a resource the server tolerates (and ignores) in a request, so a GET body can be sent back.
ECHOED: Final = {"href": STR, "status": {}, "created_at": {}, "updated_at": {}, "deleted_at": {}}


PROJECTION: Final = {
    "type": "object",
    "required": ["id"],
    "properties": {"id": STR},
    "description": "the item's id and the fields named in the fields parameter",
}


def _list(item: str) -> dict[str, Any]:
    return _obj(
        {
            "kind": STR,
            "page": {"type": "integer"},
            "size": {"type": "integer"},
            "total": {
                "type": "integer",
                "description": "rows matching the search. By page number: exact. In a cursor walk (after=): counted"
                " on the walk's first page and repeated on the later ones (the total when the walk started), exact"
                " up to 10,000 and PostgreSQL's planner estimate beyond",
            },
            "next": {
                "type": "string",
                "nullable": True,
                "description": "only with after=: the after= token of the next page, null on the last page",
            },
            # NB: with ``fields=``, items are projections: ``id`` plus the fields asked for.
            "items": {"type": "array", "items": {"anyOf": [ref(item), PROJECTION]}},
        },
        required=("kind", "page", "size", "total", "items"),
    )


def _history(item: str) -> dict[str, Any]:
    """A page of a resource's history: its spec events oldest first, each with the resource as of that event."""
    status = _obj({"type": {"type": "string", "enum": ["StatusUpdate", "StatusDelete"]}, "time": TIME, "status": {}})
    entry = _obj(
        {
            "cursor": STR,
            "event": {"type": "string", "enum": ["Create", "Update", "Snapshot", "Delete", "Deleted"]},
            "version": {"type": "integer"},
            "actor": STR,
            "time": TIME,
            "spec": ref(item),
            "statuses": {"type": "array", "items": status},
        },
        required=("cursor", "event", "version", "actor", "time", "spec", "statuses"),
    )
    return _obj(
        {
            "kind": {"type": "string", "enum": [f"{item}History"]},
            "id": STR,
            "href": STR,
            "size": {"type": "integer"},
            "items": {"type": "array", "items": entry},
            "next": {**STR, "description": "pass as after= for the next page; absent on the last page"},
        },
        required=("kind", "id", "href", "size", "items"),
    )


def _object_ref(kind: str, extra: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return _obj(
        {"id": STR, "kind": {"type": "string", "enum": [kind]}, "href": STR, **extra},
        required=("id", "kind", "href", *required),
    )


SCHEMAS: Final[dict[str, Any]] = {
    "Error": _obj(
        {"kind": STR, "id": STR, "href": STR, "code": STR, "reason": STR, "operation_id": STR},
        required=("kind", "id", "href", "code", "reason"),
    ),
    "Consumer": _object_ref(
        "Consumer",
        {"name": STR, "labels": {"type": "object"}, "created_at": TIME, "updated_at": TIME},
        ("name", "created_at", "updated_at"),
    ),
    "ConsumerCreate": _obj(
        {
            "name": {"type": "string", "pattern": r"^$|" + LABEL, "maxLength": 63, "nullable": True},
            "labels": LABELS,
            "id": {**EMPTY_OR, "nullable": True},
            "kind": {"type": "string", "enum": ["Consumer"], "nullable": True},
            "href": {},
        },
        strict=True,
    ),
    "ConsumerPatch": _obj({"labels": LABELS}, strict=True),
    "ConsumerList": _list("Consumer"),
    "Resource": _object_ref(
        "Resource",
        {
            "name": STR,
            "consumer_name": STR,
            "version": {"type": "integer"},
            "manifest": {"type": "object"},
            "update_strategy": {"type": "object"},
            "delete_option": {"type": "object"},
            "status": {"type": "object"},
            "created_at": TIME,
            "updated_at": TIME,
            "deleted_at": TIME,
        },
        ("name", "consumer_name", "version", "manifest", "created_at", "updated_at"),
    ),
    "ResourceCreate": _obj(
        {
            "name": {"type": "string", "pattern": r"^$|" + SUBDOMAIN, "maxLength": 253, "nullable": True},
            "consumer_name": STR,
            "version": VERSION,
            "manifest": MANIFEST,
            "update_strategy": {**UPDATE_STRATEGY, "nullable": True},
            "delete_option": {**SINGLE_DELETE_OPTION, "nullable": True},
            "id": ID_FOR_CREATE,
            "kind": {"type": "string", "enum": ["Resource"], "nullable": True},
            **ECHOED,
        },
        required=("consumer_name", "manifest"),
        strict=True,
    ),
    "ResourcePatch": _obj(
        {
            "version": VERSION,
            "manifest": MANIFEST,
            "update_strategy": {**UPDATE_STRATEGY, "nullable": True},
            "delete_option": {**SINGLE_DELETE_OPTION, "nullable": True},
            "id": STR,
            "name": STR,
            "consumer_name": STR,
            "kind": {"type": "string", "enum": ["Resource"], "nullable": True},
            **ECHOED,
        },
        required=("version",),
        strict=True,
    ),
    "ResourceList": _list("Resource"),
    "ResourceBundle": _object_ref(
        "ResourceBundle",
        {
            "name": STR,
            "consumer_name": STR,
            "version": {"type": "integer"},
            "metadata": {"type": "object"},
            "manifests": {"type": "array", "items": {"type": "object"}},
            "manifest_configs": {"type": "array", "items": {"type": "object"}},
            "delete_option": {"type": "object"},
            "status": {"type": "object"},
            "created_at": TIME,
            "updated_at": TIME,
            "deleted_at": TIME,
        },
        ("name", "consumer_name", "version", "manifests", "created_at", "updated_at"),
    ),
    "ResourceBundleCreate": _obj(
        {
            "id": ID_FOR_CREATE,
            "kind": {"type": "string", "enum": ["ResourceBundle"], "nullable": True},
            **ECHOED,
            "name": {"type": "string", "pattern": r"^$|" + SUBDOMAIN, "maxLength": 253, "nullable": True},
            "consumer_name": STR,
            "version": VERSION,
            "metadata": {**_obj({"labels": LABELS}), "nullable": True},
            "manifests": {"type": "array", "items": MANIFEST, "minItems": 1},
            "manifest_configs": {"type": "array", "items": MANIFEST_CONFIG, "nullable": True},
            "delete_option": {**DELETE_OPTION, "nullable": True},
        },
        required=("consumer_name", "manifests"),
        strict=True,
    ),
    "ResourceBundleReplace": _obj(
        {
            "version": VERSION,
            "id": STR,
            "name": STR,
            "consumer_name": STR,
            "kind": {"type": "string", "enum": ["ResourceBundle"], "nullable": True},
            **ECHOED,
            "metadata": {**_obj({"labels": LABELS}), "nullable": True},
            "manifests": {"type": "array", "items": MANIFEST, "minItems": 1},
            "manifest_configs": {"type": "array", "items": MANIFEST_CONFIG, "nullable": True},
            "delete_option": {**DELETE_OPTION, "nullable": True},
        },
        required=("version", "manifests"),
        strict=True,
    ),
    "ResourceBundleList": _list("ResourceBundle"),
    "ResourceHistory": _history("Resource"),
    "ResourceBundleHistory": _history("ResourceBundle"),
    "ErrorList": _obj(
        {
            "kind": STR,
            "page": {"type": "integer"},
            "size": {"type": "integer"},
            "total": {"type": "integer"},
            "items": {"type": "array", "items": {"type": "object"}},
        },
        required=("kind", "page", "size", "total", "items"),
    ),
}

LIST_PARAMS: Final = [
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}, "description": "1-based page"},
    {
        "name": "size",
        "in": "query",
        "schema": {"type": "integer"},
        "description": "items per page (default 100); 0 returns only the total; <0 or >65500 means 65500",
    },
    {"name": "search", "in": "query", "schema": STR},
    {"name": "orderBy", "in": "query", "schema": STR},
    {"name": "fields", "in": "query", "schema": STR},
    {
        "name": "after",
        "in": "query",
        "schema": STR,
        "description": "keyset pagination: empty to start a walk, then the previous page's next. A page costs the"
        " same at any depth. Not with page; orderBy may be created_at, name or id (asc or desc), or left out",
    },
]
ID_PARAM: Final = {"name": "id", "in": "path", "required": True, "schema": STR}
VERSION_PARAM: Final = {
    "name": "version",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
    "description": "that version's spec from the event log (without status); 404 says if it is unknown or compacted",
}
HISTORY_PARAMS: Final = [
    ID_PARAM,
    {
        "name": "after",
        "in": "query",
        "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
        "description": "the next cursor of the previous page (default: from the first event)",
    },
    {
        "name": "size",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
        "description": "entries per page (default 20)",
    },
]


REPEATED_CREATE: Final = "A create repeated with the same id and body: the resource the first one created"


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "Bad request",
        401: "Not authenticated",
        403: "Forbidden",
        404: "Not found",
        409: "Conflict",
        500: "Unexpected error",
        503: "The database is unavailable: retry after Retry-After seconds (a create is safe to retry with the same"
        " id)",
    }
    return {str(c): {"description": texts[c], **_json(ref("Error"))} for c in (*codes, 401, 500, 503)}


def _op(
    op_id: str,
    summary: str,
    ok: int,
    schema: str | None,
    *,
    params: list[Any] | None = None,
    body: str | None = None,
    errors: tuple[int, ...] = (),
    repeated: str | None = None,
) -> dict[str, Any]:
    """``repeated``: the description of a 200 that an idempotent create answers when it was already done."""
    out: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "parameters": params or [],
        "responses": {
            str(ok): {"description": "Success", **(_json(ref(schema)) if schema else {})},
            **_errors(*errors),
        },
    }
    if repeated and schema:
        out["responses"]["200"] = {"description": repeated, **_json(ref(schema))}
    if body:
        out["requestBody"] = {"required": True, **_json(ref(body))}
        out["responses"].setdefault("400", {"description": "Bad request", **_json(ref("Error"))})
        out["responses"]["408"] = {"description": "The body did not arrive in time", **_json(ref("Error"))}
        out["responses"]["415"] = {"description": "The body is not application/json", **_json(ref("Error"))}
    return out


def document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Maestro Service API",
            "version": "0.0.1",
            "description": "Deliver Kubernetes resources from one hub to many clusters.",
        },
        "servers": [{"url": "/"}],
        "security": [{"Bearer": []}],
        "paths": {
            "/api/maestro/v1/consumers": {
                "get": _op("listConsumers", "List consumers", 200, "ConsumerList", params=LIST_PARAMS, errors=(400,)),
                "post": _op(
                    "createConsumer", "Create a consumer", 201, "Consumer", body="ConsumerCreate", errors=(400, 409)
                ),
            },
            "/api/maestro/v1/consumers/{id}": {
                "get": _op("getConsumer", "Get a consumer by id", 200, "Consumer", params=[ID_PARAM], errors=(404,)),
                "patch": _op(
                    "patchConsumer",
                    "Replace a consumer's labels",
                    200,
                    "Consumer",
                    params=[ID_PARAM],
                    body="ConsumerPatch",
                    errors=(400, 404),
                ),
                "delete": _op(
                    "deleteConsumer",
                    "Delete a consumer no resource references",
                    204,
                    None,
                    params=[ID_PARAM],
                    errors=(403, 404),
                ),
            },
            "/api/maestro/v1/resources": {
                "get": _op(
                    "listResources", "List single resources", 200, "ResourceList", params=LIST_PARAMS, errors=(400,)
                ),
                "post": _op(
                    "createResource",
                    "Create a single resource",
                    201,
                    "Resource",
                    body="ResourceCreate",
                    errors=(400, 409),
                    repeated=REPEATED_CREATE,
                ),
            },
            "/api/maestro/v1/resources/{id}": {
                "get": _op(
                    "getResource",
                    "Get a single resource (or one version of its spec)",
                    200,
                    "Resource",
                    params=[ID_PARAM, VERSION_PARAM],
                    errors=(400, 404),
                ),
                "patch": _op(
                    "patchResource",
                    "Update a single resource",
                    200,
                    "Resource",
                    params=[ID_PARAM],
                    body="ResourcePatch",
                    errors=(400, 404, 409),
                ),
                "delete": _op(
                    "deleteResource",
                    "Delete a single resource (two-phase)",
                    204,
                    None,
                    params=[ID_PARAM],
                    errors=(404,),
                ),
            },
            "/api/maestro/v1/resources/{id}/history": {
                "get": _op(
                    "getResourceHistory",
                    "Every spec version of a single resource (who wrote it, when) and the statuses reported for it,"
                    " oldest first, also after its deletion while retention keeps its events",
                    200,
                    "ResourceHistory",
                    params=HISTORY_PARAMS,
                    errors=(400, 404),
                ),
            },
            "/api/maestro/v1/resource-bundles": {
                "get": _op(
                    "listResourceBundles",
                    "List resource bundles (bundles only: single resources are listed under /resources, though"
                    " each is also readable here by id). With watch=true (and optional cursor, consumer_name,"
                    " source) the response is instead a stream of status changes as application/x-ndjson or"
                    " text/event-stream",
                    200,
                    "ResourceBundleList",
                    params=LIST_PARAMS,
                    errors=(400,),
                ),
                "post": _op(
                    "createResourceBundle",
                    "Create a resource bundle",
                    201,
                    "ResourceBundle",
                    body="ResourceBundleCreate",
                    errors=(400, 409),
                    repeated=REPEATED_CREATE,
                ),
            },
            "/api/maestro/v1/resource-bundles/{id}": {
                "get": _op(
                    "getResourceBundle",
                    "Get a resource bundle (or one version of its spec)",
                    200,
                    "ResourceBundle",
                    params=[ID_PARAM, VERSION_PARAM],
                    errors=(400, 404),
                ),
                "put": _op(
                    "replaceResourceBundle",
                    "Replace a resource bundle's spec",
                    200,
                    "ResourceBundle",
                    params=[ID_PARAM],
                    body="ResourceBundleReplace",
                    errors=(400, 404, 409),
                ),
                # NB: an unknown id is a 204 (as upstream); 404 only when the path does not route at all (an id
                # with '/' or a line break in it).
                "delete": _op(
                    "deleteResourceBundle",
                    "Delete a resource bundle (two-phase, idempotent)",
                    204,
                    None,
                    params=[ID_PARAM],
                    errors=(404,),
                ),
            },
            "/api/maestro/v1/resource-bundles/{id}/history": {
                "get": _op(
                    "getResourceBundleHistory",
                    "Every spec version of a resource bundle (who wrote it, when) and the statuses reported for it,"
                    " oldest first, also after its deletion while retention keeps its events",
                    200,
                    "ResourceBundleHistory",
                    params=HISTORY_PARAMS,
                    errors=(400, 404),
                ),
            },
            "/api/maestro/v1/errors": {
                "get": {**_op("listErrors", "List error codes", 200, "ErrorList"), "security": []},
            },
            "/api/maestro/v1/errors/{id}": {
                "get": {
                    **_op("getError", "Get an error code", 200, "Error", params=[ID_PARAM], errors=(404,)),
                    "security": [],
                },
            },
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"Bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
