"""Reading request bodies: JSON objects only, declared as JSON, size-capped and time-limited before parsing.

A body must not be declared as anything but JSON: ``text/plain``, form and multipart bodies are what another
site's page can make a browser send without a CORS preflight, with our ``cs_jwt`` cookie attached (CSRF). A body
with no ``Content-Type`` is read as JSON, except on a request authenticated by that cookie (``fetch`` sends a
``Blob`` untyped, also without a preflight). Either way a refused type is a 415.

Python's ``json`` is more lenient than JSON and PostgreSQL: it reads ``NaN``/``Infinity`` (and turns ``1e400``
into infinity), and it accepts ``\\u0000`` and unpaired surrogate escapes, which jsonb and UTF-8 cannot store.
All of these are refused here as malformed bodies (400), before a service sees them; otherwise they would fail
later, inside a transaction, as a 500.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any, Final

from starlette.requests import Request

from server.errors import MalformedRequest, RequestTimeout, UnsupportedMediaType
from server.http import state

_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")
_MAYBE_UNSTORABLE: Final = re.compile(rb"\\u|\x00|\xed[\xa0-\xbf]")
"""What a body's bytes must hold for its JSON to hold a NUL or a lone surrogate: an escape (``\\u``); a NUL byte
(raw in UTF-8 JSON it is invalid anyway, and UTF-16 and UTF-32 bodies, which ``json.loads`` also reads, hold them);
or a surrogate encoded in UTF-8 (``json.loads`` decodes bytes with ``surrogatepass``). Bodies without any of these
(most) skip the walk over every string."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _check_strings(value: Any) -> None:
    """Raise MalformedRequest if any key or string holds NUL or an unpaired surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings: list[str] = [item]
        elif isinstance(item, dict):
            strings = list(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
            continue
        else:
            continue
        for text in strings:
            if _UNSTORABLE.search(text):
                raise MalformedRequest("Request body contains a NUL character or an unpaired surrogate escape")


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _check_media_type(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if content_type is None:
        if request.scope.get("credentials") == "cookie":
            raise UnsupportedMediaType(
                "Request body has no Content-Type: with cookie authentication it must be application/json"
            )
        return
    if not _is_json(content_type):
        raise UnsupportedMediaType(f"Request body is {content_type!r}: it must be application/json")


async def _read(request: Request, limit: int) -> bytes:
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
    return b"".join(chunks)


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or MalformedRequest (400, code 17; 415 for another media type, 408 for a body
    slower than --http-read-timeout) saying what is wrong."""
    settings = state.settings(request)
    _check_media_type(request)
    try:
        async with asyncio.timeout(settings.http.http_read_timeout):
            raw = await _read(request, settings.http.http_max_body_bytes)
    except TimeoutError:
        raise RequestTimeout(f"Request body was not received within {settings.http.http_read_timeout:g} s") from None
    if not raw.strip():
        raise MalformedRequest("Request body is empty: expected a JSON object")
    try:
        body = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite)
    except RecursionError:
        raise MalformedRequest("Request body is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedRequest(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedRequest(f"Request body must be a JSON object, not {type(body).__name__}")
    if _MAYBE_UNSTORABLE.search(raw):
        _check_strings(body)
    return body
