"""The one backoff rule: doubling from the minimum, capped, jittered downwards by at most the jitter fraction."""

from __future__ import annotations

import pytest

from protocol.backoff import Backoff


def test_doubles_from_the_minimum_up_to_the_cap() -> None:
    backoff = Backoff(min=0.5, max=4.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.delay(0) == backoff.delay(-3) == 0.5
    assert backoff.delay(10_000) == 4.0  # no overflow however long the outage


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.999])
def test_jitter_takes_off_at_most_its_fraction(draw: float) -> None:
    backoff = Backoff(min=1.0, max=60.0, jitter=0.5)
    delay = backoff.delay(3, rng=lambda: draw)
    assert 2.0 <= delay <= 4.0
    assert delay == pytest.approx(4.0 * (1 - 0.5 * draw))


def test_spread_between_half_and_all_of_the_base() -> None:
    delays = [Backoff(min=1.0, max=8.0).delay(4) for _ in range(2000)]
    assert min(delays) >= 4.0
    assert max(delays) <= 8.0
    assert max(delays) - min(delays) > 3.0  # they really are spread out


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min": 0.0}, "minimum must be positive"),
        ({"min": 2.0, "max": 1.0}, "below its minimum"),
        ({"jitter": 1.5}, "between 0 and 1"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)
