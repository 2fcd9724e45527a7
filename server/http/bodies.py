"""Reading request bodies: JSON objects only, size-capped before parsing.

Python's ``json`` is more lenient than JSON and PostgreSQL: it reads ``NaN``/``Infinity`` (and turns ``1e400``
into infinity), and it accepts ``\\u0000`` and unpaired surrogate escapes, which jsonb and UTF-8 cannot store.
All of these are refused here as malformed bodies (400), before a service sees them; otherwise they would fail
later, inside a transaction, as a 500.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

from starlette.requests import Request

from server.errors import MalformedRequest
from server.http import state

_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")


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
        body = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite)
    except RecursionError:
        raise MalformedRequest("Request body is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedRequest(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedRequest(f"Request body must be a JSON object, not {type(body).__name__}")
    _check_strings(body)
    return body
