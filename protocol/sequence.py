"""Snowflake sequence ids for status events, as upstream's agent makes them (bwmarrin/snowflake layout).

An id is ``(ms since epoch - EPOCH) << 22 | node << 12 | step`` written as a decimal string: 41 bits of
milliseconds, 10 bits of node, 12 bits of a per-millisecond counter. Ids from one generator strictly
increase, so the hub can drop a status that is not newer than the last one it accepted for a resource. The
generator never goes backwards even if the wall clock does: it keeps using the last millisecond it saw
until the clock catches up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

from protocol.errors import ProtocolError

#: bwmarrin/snowflake's default epoch (Twitter's, 2010-11-04T01:42:54.657Z), in ms.
EPOCH_MS: Final = 1288834974657
NODE_BITS: Final = 10
STEP_BITS: Final = 12
MAX_NODE: Final = (1 << NODE_BITS) - 1
MAX_STEP: Final = (1 << STEP_BITS) - 1
#: Upstream's agent uses node 1.
DEFAULT_NODE: Final = 1


class SequenceGenerator:
    """Thread-safe generator of strictly increasing snowflake ids."""

    def __init__(self, node: int = DEFAULT_NODE, *, clock_ms: Callable[[], int] | None = None) -> None:
        if not 0 <= node <= MAX_NODE:
            raise ValueError(f"node must be within 0..{MAX_NODE}, got {node}")
        self._node = node
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._last_ms = -1
        self._step = 0
        self._lock = threading.Lock()

    def next_int(self) -> int:
        with self._lock:
            now = max(self._clock_ms() - EPOCH_MS, self._last_ms)
            if now == self._last_ms:
                self._step = (self._step + 1) & MAX_STEP
                if self._step == 0:
                    # NB: 4096 ids in one millisecond: borrow the next millisecond rather than spin on the
                    # clock.
                    now += 1
            else:
                self._step = 0
            self._last_ms = now
            return (now << (NODE_BITS + STEP_BITS)) | (self._node << STEP_BITS) | self._step

    def next(self) -> str:
        """The next id in its wire form (a decimal string)."""
        return str(self.next_int())


def parse(value: object) -> int:
    """A wire sequence id as an int; accepts int or decimal string, else :class:`ProtocolError`."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ProtocolError(f"invalid sequence id {value!r}")


def is_newer(candidate: object, than: object | None) -> bool:
    """Whether ``candidate`` is newer than ``than``; anything is newer than nothing (``None`` or ``""``)."""
    if than is None or than == "":
        return True
    return parse(candidate) > parse(than)


def timestamp_ms(value: object) -> int:
    """Unix time in ms at which an id was generated (for logs and latency metrics)."""
    return (parse(value) >> (NODE_BITS + STEP_BITS)) + EPOCH_MS
