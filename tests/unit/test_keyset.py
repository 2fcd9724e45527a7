"""``after`` tokens: they round-trip, bind their values as parameters, and refuse what is not theirs."""

from __future__ import annotations

import datetime
import re

import pytest

from server.store import keyset
from server.store import resources as resource_rows

ORDERS = {"created_at": ("created_at", "id"), "name": ("name",), "id": ("id",)}
WHEN = datetime.datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=datetime.UTC)


def keys(order: str = "", collection: str = "resource-bundles") -> keyset.Keyset:
    return keyset.keyset(collection, resource_rows.SCHEMA, ORDERS, order)


def test_round_trip_and_sql() -> None:
    ks = keys()
    token = keyset.encode(ks, keyset.Position(key=(WHEN, "a'b"), page=3, total=7))
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert keyset.decode(ks, token) == keyset.Position(key=(WHEN, "a'b"), page=3, total=7)
    assert ks.order_sql == "resources.created_at, resources.id"
    assert ks.after_sql(4) == "(resources.created_at, resources.id) > ($4::timestamptz, $5::text)"
    desc = keys("name DESC")
    assert (desc.order_sql, desc.after_sql(1)) == ("resources.name DESC", "resources.name < $1::text")


@pytest.mark.parametrize("order", ["consumer_name", "name, id", "name sideways", "version desc"])
def test_orders_the_cursor_cannot_follow(order: str) -> None:
    with pytest.raises(keyset.CursorError, match="the cursor follows orderBy created_at"):
        keys(order)


def test_foreign_and_malformed_tokens() -> None:
    token = keyset.encode(keys(), keyset.Position(key=(WHEN, "x"), page=1, total=1))
    for other in (keys("created_at desc"), keys("name"), keys(collection="resources")):
        with pytest.raises(keyset.CursorError, match="belongs to another list"):
            keyset.decode(other, token)
    for bad in ("", "%%%", "bm90IGpzb24", token[:-3], "WzEsMl0"):
        with pytest.raises(keyset.CursorError, match="malformed cursor"):
            keyset.decode(keys(), bad)
