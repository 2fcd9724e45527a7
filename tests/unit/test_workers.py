"""``--http-workers``: how the database pool budget is split between the hub process and its REST workers."""

from __future__ import annotations

import pytest

from server.workers import pool_sizes


@pytest.mark.parametrize(
    ("total", "workers", "expected"),
    [(50, 1, (50, 0)), (50, 2, (18, 16)), (50, 4, (10, 10)), (10, 3, (4, 2)), (4, 4, (2, 2))],
)
def test_the_pool_budget_is_split_and_never_below_two_connections(
    total: int, workers: int, expected: tuple[int, int]
) -> None:
    hub, each = pool_sizes(total, workers)
    assert (hub, each) == expected
    if total >= 2 * (workers + 1):
        assert hub + workers * each == total  # NB: within the budget whenever it allows 2 each
