"""Reading request bodies: JSON objects only, size-capped before parsing."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from server.errors import MalformedRequest
from server.http import state


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or MalformedRequest (400, code 17) saying what is wrong."""
    limit = state.settings(request).http_max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise MalformedRequest(f"Request body is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise MalformedRequest(f"Request body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise MalformedRequest("Request body is empty: expected a JSON object")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedRequest(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedRequest(f"Request body must be a JSON object, not {type(body).__name__}")
    return body
