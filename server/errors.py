"""Domain errors and their one rendering, the upstream Maestro error body.

Endpoints and services raise; ``server.http.errors`` turns any of these into
``{kind: "Error", id, href, code, reason, operation_id}`` with upstream's codes and HTTP statuses
(reference: maestro.md §1.4). The tree::

    ServiceError
    ├── Forbidden (4, 403)            e.g. deleting a consumer that resources still reference
    ├── Conflict (6, 409)             unique violation, stale version, resource being deleted
    ├── NotFound (7, 404)
    ├── ValidationError (8, 400)      a well-formed body with bad values; lists every field error
    ├── GeneralError (9, 500)
    │   └── DatabaseUnavailable (9, 503)    PostgreSQL cannot be reached now; retry (see server.store.availability)
    ├── MethodNotAllowed (10, 405)
    ├── Unauthenticated (15, 401)
    ├── MalformedRequest (17, 400)    not JSON, wrong top-level type, too large
    │   ├── UnsupportedMediaType (17, 415)  a body that is not declared application/json
    │   └── RequestTimeout (17, 408)        a body that did not arrive within --http-read-timeout
    ├── BadRequest (21, 400)          bad query parameters (orderBy, fields, page, size)
    └── SearchParseError (23, 400)

A database integrity error (SQLSTATE class 23) that a service did not turn into one of these itself is still the
client's: :func:`from_integrity` picks the error, so it never surfaces as a 500.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

API_PATH: Final = "/api/maestro/v1"


@dataclass(frozen=True)
class ErrorDefinition:
    code: int
    status: int
    reason: str


class ServiceError(Exception):
    """Base of every error that reaches a client. ``reason`` is user-facing text."""

    code: ClassVar[int] = 9
    status: ClassVar[int] = 500
    default_reason: ClassVar[str] = "Unspecified error"

    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason or self.default_reason
        super().__init__(self.reason)


class Forbidden(ServiceError):
    code, status, default_reason = 4, 403, "Forbidden to perform this action"


class Conflict(ServiceError):
    code, status, default_reason = 6, 409, "An entity with the specified unique values already exists"


class NotFound(ServiceError):
    code, status, default_reason = 7, 404, "Resource not found"


class ValidationError(ServiceError):
    code, status, default_reason = 8, 400, "General validation failure"

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class GeneralError(ServiceError):
    code, status, default_reason = 9, 500, "Unspecified error"


class DatabaseUnavailable(GeneralError):
    """The database cannot be reached (down, restarting, out of connections): retry later. A write whose
    connection dropped during its commit may have been applied: retry it idempotently (a create with the same id
    returns what the first one created). Upstream has no code of its own for it: a general error, with the status
    that says "retry"."""

    code, status, default_reason = 9, 503, "The database is unavailable; retry later"


class MethodNotAllowed(ServiceError):
    code, status, default_reason = 10, 405, "HTTP Method not implemented for this endpoint"


class Unauthenticated(ServiceError):
    code, status, default_reason = 15, 401, "Account authentication could not be verified"


class MalformedRequest(ServiceError):
    code, status, default_reason = 17, 400, "Unable to read request body"


class UnsupportedMediaType(MalformedRequest):
    code, status, default_reason = 17, 415, "Request body must be application/json"


class RequestTimeout(MalformedRequest):
    code, status, default_reason = 17, 408, "Request body was not received in time"


class BadRequest(ServiceError):
    code, status, default_reason = 21, 400, "Bad request"


class SearchParseError(ServiceError):
    code, status, default_reason = 23, 400, "Failed to parse search query"


# NB: upstream's codes that this hub never raises (no token ACL, no advisory locks) are listed all the same, so that
# ``GET /errors`` serves upstream's catalog.
_NEVER_RAISED: Final = (
    ErrorDefinition(1, 403, "Invalid token provided"),
    ErrorDefinition(11, 403, "Account is unauthorized to perform this action"),
    ErrorDefinition(26, 500, "Database advisory lock error"),
)

CATALOG: Final[dict[int, ErrorDefinition]] = {
    d.code: d
    for d in sorted(
        [
            *_NEVER_RAISED,
            *(
                ErrorDefinition(cls.code, cls.status, cls.default_reason)
                for cls in (
                    Forbidden,
                    Conflict,
                    NotFound,
                    ValidationError,
                    GeneralError,
                    MethodNotAllowed,
                    Unauthenticated,
                    MalformedRequest,
                    BadRequest,
                    SearchParseError,
                )
            ),
        ],
        key=lambda d: d.code,
    )
}


def href(code: int | str) -> str:
    return f"{API_PATH}/errors/{code}"


def body(code: int, reason: str, operation_id: str | None) -> dict[str, str]:
    """The upstream error body."""
    out = {"kind": "Error", "id": str(code), "href": href(code), "code": f"maestro-{code}", "reason": reason}
    if operation_id:
        out["operation_id"] = operation_id
    return out


# SQLSTATE class 23 (integrity_constraint_violation), by condition.
_UNIQUE: Final = {"23505", "23P01"}  # unique_violation, exclusion_violation
_REFERENCE: Final = {"23503", "23001"}  # foreign_key_violation, restrict_violation (PostgreSQL 18 for RESTRICT)


def from_integrity(sqlstate: str | None, constraint: str | None = None) -> ServiceError:
    """The client error for a database integrity violation: 409 for a duplicate, 403 for a reference that is
    missing or still in use (upstream's answer to a blocked delete), 400 for anything else the schema refuses."""
    named = f" ({constraint})" if constraint else ""
    if sqlstate in _UNIQUE:
        return Conflict(f"An entity with the specified unique values already exists{named}")
    if sqlstate in _REFERENCE:
        return Forbidden(f"The request conflicts with a reference between entities{named}")
    return ValidationError(f"The request breaks a rule of the data model{named}")
