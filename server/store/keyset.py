"""Keyset pagination: the ``after`` cursor of a list and its opaque ``next`` token.

A page read by cursor starts just after the order key of the previous page's last row (``WHERE (created_at, id)
> ($1, $2) ORDER BY created_at, id LIMIT n``), so its cost is that of page 1 at any depth: PostgreSQL walks an
index from the key, where ``OFFSET`` would read and drop every row before the page. A row inserted or deleted
during a walk moves no other row, so every row that exists throughout the walk is read exactly once.

The cursor follows an order whose key is unique, on indexed columns: the default order (``created_at, id``),
``created_at`` (with ``id`` as tie-break), or a unique column (``name``, ``id``), ascending or descending. Any
other ``orderBy`` is a :class:`CursorError` naming those.

The token is url-safe base64 of a small JSON document: the collection and order it belongs to (a token is
refused by another list), the key of the last row, the page number and the walk's ``total`` (counted once, on
its first page). Its values only ever reach SQL as bound parameters, so a forged token can move a walk but not
change what it may read.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from server.store import search

_VERSION: Final = 1
_CASTS: Final = {"text": "text", "int": "bigint", "timestamp": "timestamptz", "bool": "boolean"}


class CursorError(search.SearchError):
    """A malformed or foreign ``after`` token, or an ``orderBy`` the cursor cannot follow (a 400)."""


@dataclasses.dataclass(frozen=True)
class Keyset:
    """One cursor order of one collection."""

    collection: str
    names: tuple[str, ...]
    columns: tuple[search.Column, ...]
    descending: bool

    @property
    def order_sql(self) -> str:
        direction = " DESC" if self.descending else ""
        return ", ".join(c.sql + direction for c in self.columns)

    def after_sql(self, first_param: int) -> str:
        """``(a, b) > ($n, $n+1)`` (``<`` descending): the rows after a key bound from ``first_param`` on."""
        params = [f"${first_param + i}::{_CASTS[c.kind]}" for i, c in enumerate(self.columns)]
        op = "<" if self.descending else ">"
        if len(self.columns) == 1:
            return f"{self.columns[0].sql} {op} {params[0]}"
        return f"({', '.join(c.sql for c in self.columns)}) {op} ({', '.join(params)})"

    def _signature(self) -> list[Any]:
        return [self.collection, ",".join(self.names), self.descending]


@dataclasses.dataclass(frozen=True)
class Position:
    """What a ``next`` token carries."""

    key: tuple[Any, ...]
    page: int
    total: int


def keyset(collection: str, schema: search.Schema, orders: Mapping[str, tuple[str, ...]], order_by: str) -> Keyset:
    """The keyset for ``order_by`` (blank: the first of ``orders``), or a :class:`CursorError`.

    ``orders`` maps each orderBy column the cursor follows to its unique key (names in ``schema.columns``).
    """
    words = order_by.split()
    default = next(iter(orders))
    if not words:
        words = [default]
    column = words[0].lower()
    if len(words) > 2 or column not in orders or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
        allowed = ", ".join(f"{name} [asc|desc]" for name in orders)
        raise CursorError(f"after: the cursor follows orderBy {allowed}, not {order_by.strip()!r}")
    names = orders[column]
    return Keyset(
        collection=collection,
        names=names,
        columns=tuple(schema.columns[n] for n in names),
        descending=len(words) == 2 and words[1].lower() == "desc",
    )


def encode(keyset: Keyset, position: Position) -> str:
    values = [_dump(v) for v in position.key]
    document = [_VERSION, *keyset._signature(), values, position.page, position.total]
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(keyset: Keyset, token: str) -> Position:
    """The position ``token`` holds; raises :class:`CursorError` for a malformed or foreign one."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        document = json.loads(raw)
        version, collection, names, descending, values, page, total = document
    except (ValueError, TypeError, binascii.Error):
        raise CursorError("after: malformed cursor (pass back the list's `next` unchanged)") from None
    if version != _VERSION or [collection, names, descending] != keyset._signature():
        raise CursorError(
            "after: this cursor belongs to another list (another collection or orderBy); start a walk without it"
        )
    if not (isinstance(values, list) and len(values) == len(keyset.columns)):
        raise CursorError("after: malformed cursor (pass back the list's `next` unchanged)")
    if not (_is_int(page) and _is_int(total) and page >= 1 and total >= 0):
        raise CursorError("after: malformed cursor (pass back the list's `next` unchanged)")
    return Position(key=tuple(_load(c, v) for c, v in zip(keyset.columns, values, strict=True)), page=page, total=total)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _dump(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime.datetime) else value


def _load(column: search.Column, value: object) -> object:
    bad = CursorError("after: malformed cursor (pass back the list's `next` unchanged)")
    if column.kind == "timestamp":
        if not isinstance(value, str):
            raise bad
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise bad from None
        if parsed.tzinfo is None:
            raise bad
        return parsed
    if column.kind == "text" and isinstance(value, str) and "\x00" not in value:
        return value
    if column.kind == "int" and _is_int(value):
        return value
    raise bad


def key_columns(keyset: Keyset) -> Sequence[str]:
    """``<sql> AS _k0, ...``: the key of each row, selected beside what the list returns."""
    return [f"{c.sql} AS _k{i}" for i, c in enumerate(keyset.columns)]
