"""Every error leaves the REST API in the one upstream body (see :mod:`server.errors`)."""

from __future__ import annotations

import logging

import asyncpg
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ExceptionHandler

from server import errors
from server.store import availability

log = logging.getLogger(__name__)

OPERATION_ID_HEADER = "X-Operation-ID"


def operation_id(request: Request) -> str | None:
    return request.scope.get("operation_id")


def render(request: Request, code: int, status: int, reason: str) -> JSONResponse:
    op = operation_id(request)
    headers = {OPERATION_ID_HEADER: op} if op else None
    return JSONResponse(errors.body(code, reason, op), status_code=status, headers=headers)


RETRY_AFTER = "1"
"""Seconds a client is asked to wait before retrying while the database is unavailable."""


async def service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.ServiceError)
    if isinstance(exc, errors.DatabaseUnavailable):
        return unavailable(request)
    if exc.status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc.reason)
    return render(request, exc.code, exc.status, exc.reason)


def unavailable(request: Request) -> Response:
    """503: not logged per request, :mod:`server.store.availability` logs the outage once."""
    response = render(request, errors.DatabaseUnavailable.code, 503, errors.DatabaseUnavailable.default_reason)
    response.headers["Retry-After"] = RETRY_AFTER
    return response


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return render(request, errors.NotFound.code, 404, f"The requested resource '{request.url.path}' doesn't exist")
    if exc.status_code == 405:
        response = render(
            request,
            errors.MethodNotAllowed.code,
            405,
            f"HTTP Method {request.method} not implemented for '{request.url.path}'",
        )
        if exc.headers and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    if exc.status_code == 413:
        return render(request, errors.MalformedRequest.code, 413, "Request body is too large")
    return render(
        request,
        errors.BadRequest.code if exc.status_code < 500 else errors.GeneralError.code,
        exc.status_code,
        str(exc.detail),
    )


async def integrity_error(request: Request, exc: Exception) -> Response:
    """A constraint the services did not check first: still the client's error, never a 500."""
    assert isinstance(exc, asyncpg.IntegrityConstraintViolationError)
    log.warning("%s %s tripped a database constraint: %s", request.method, request.url.path, exc)
    refused = errors.from_integrity(exc.sqlstate, exc.constraint_name)
    return render(request, refused.code, refused.status, refused.reason)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    if availability.unavailable(exc):  # NB: a database error raised outside server.store.db's guard.
        availability.STATE.failed(exc)
        return unavailable(request)
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return render(request, errors.GeneralError.code, 500, "Unspecified error")


HANDLERS: dict[type[Exception] | int, ExceptionHandler] = {
    errors.ServiceError: service_error,
    asyncpg.IntegrityConstraintViolationError: integrity_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
