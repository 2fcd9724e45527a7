"""A JSON value as PostgreSQL's ``jsonb`` gives it back, without the round trip.

A write that answers the row it stored builds it from the values it sent rather than having PostgreSQL return
them, to be decoded again. The value is equal either way, but ``jsonb`` keeps an object's keys in its own order
(shorter first, then bytewise) and reads a number as ``numeric``, so the text rendered from it differs: a float
that Python writes with a positive exponent (``1e+16``) comes back as an integer, and ``-0.0`` as ``0.0``.
:func:`stored` applies the same rules, so what such a write answers renders as a later read of the row does.
"""

from __future__ import annotations

import decimal
from typing import Any, Final

_WALK: Final = frozenset({dict, list, float})
"""The types :func:`stored` changes or looks inside; anything else (strings, ints, booleans, null) is kept."""


def _jsonb_order(key: str) -> tuple[int, str]:
    # NB: UTF-8 keeps code point order, so the text compares as its bytes do; only the length is in bytes.
    return len(key.encode()), key


_ORDERS: dict[tuple[str, ...], tuple[str, ...]] = {}
"""jsonb's order of each set of keys seen, as sent: objects of one kind (a Deployment, its metadata) repeat theirs."""
_MAX_ORDERS: Final = 4096


def _order(keys: tuple[str, ...]) -> tuple[str, ...]:
    order = _ORDERS.get(keys)
    if order is None:
        if len(_ORDERS) >= _MAX_ORDERS:
            _ORDERS.clear()  # NB: keys that vary per object (annotations, labels) must not grow it without bound
        order = _ORDERS[keys] = tuple(sorted(keys, key=_jsonb_order))
    return order


def _number(value: float) -> float | int:
    if value == 0.0:
        return 0.0  # NB: numeric has no negative zero
    text = repr(value)  # NB: what the JSON encoder sends
    # NB: numeric prints no exponent: a positive one leaves no fraction, and the JSON decoder reads an integer.
    return int(decimal.Decimal(text)) if "e+" in text else value


def stored(value: Any) -> Any:
    """``value`` (decoded JSON, or what encodes to it) as ``jsonb`` stores it and the JSON decoder reads it back."""
    kind = type(value)
    if kind is dict:
        out = {}
        for key in _order(tuple(value)) if len(value) > 1 else value:
            item = value[key]
            out[key] = stored(item) if type(item) in _WALK else item
        return out
    if kind is list:
        return [stored(item) if type(item) in _WALK else item for item in value]
    if kind is float:
        return _number(value)
    return value
