"""jsonb's form of a value without the round trip (server/store/jsonb.py); the round trip itself is compared in
tests/integration/test_create_answer.py."""

from __future__ import annotations

import json

from server.store import jsonb


def test_keys_come_shorter_first_then_bytewise_and_numbers_as_numeric_prints_them() -> None:
    value = {"zz": 1, "b": {"yy": 1e16, "x": -0.0, "é": 0.5, "ab": [{"bb": 1, "a": 2}]}, "aa": 2, "日本": 3}
    for _ in range(2):  # NB: the second time from the cached key orders
        form = jsonb.stored(value)
        assert json.dumps(form, ensure_ascii=False) == (
            '{"b": {"x": 0.0, "ab": [{"a": 2, "bb": 1}], "yy": 10000000000000000, "é": 0.5}, "aa": 2, "zz": 1,'
            ' "日本": 3}'
        )
    assert value["b"]["yy"] == 1e16  # NB: the value given is left as it was


def test_the_cache_of_key_orders_stays_bounded() -> None:
    for i in range(jsonb._MAX_ORDERS + 10):
        jsonb.stored({f"k{i}": 1, "a": 2})
    assert len(jsonb._ORDERS) <= jsonb._MAX_ORDERS
