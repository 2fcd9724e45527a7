"""Retry delays: capped exponential backoff with jitter, the one rule every retry loop of the hub and the agent uses.

Attempt ``n`` (counting from 1) waits ``min * 2**(n-1)``, never more than ``max``, less a random part of up to
``jitter`` of it: with the default 0.5 a delay lands between half and all of its base ("equal jitter"), so many
clients that failed together do not retry together, and none retries sooner than half the schedule.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    min: float = 0.5
    max: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not self.min > 0:
            raise ValueError(f"backoff minimum must be positive, got {self.min}")
        if not self.max >= self.min:
            raise ValueError(f"backoff maximum {self.max} is below its minimum {self.min}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff jitter must be between 0 and 1, got {self.jitter}")

    def delay(self, attempt: int, *, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``attempt`` (1 = the first retry; lower counts as 1)."""
        base = min(self.max, self.min * 2.0 ** min(max(attempt, 1) - 1, 62))
        return base * (1.0 - self.jitter * rng())
