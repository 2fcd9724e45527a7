"""The garbage collector of a serving hub process: its start-up heap frozen, young collections rarer.

CPython's cyclic collector runs a young collection every 700 net container allocations, and every hundredth
collection looks at the whole heap. A serving hub allocates fast (every request, row and message) and frees
nearly all of it by reference counting, and its heap is mostly what start-up built (~100,000 objects: modules,
classes, the app). Under creates that cost ~6 % of the hub's CPU, and each full collection paused the event loop
for ~50 ms, every request's answer included (bench/README.md, vs_apiserver.py "Fourth pass").

:func:`settle` is called once a process has built what it serves with: a full collection, then
:func:`gc.freeze` moves every live object out of the collector's view for good (they are still freed by
reference counting; only a reference cycle among them would never be), and the young generation's threshold
goes from 700 to :data:`YOUNG_THRESHOLD`. Cycles made later (an exception and its traceback, a task and its
future) are collected as before, in larger and rarer rounds.
"""

from __future__ import annotations

import gc
from typing import Final

YOUNG_THRESHOLD: Final = 10_000
"""Net container allocations between young collections (CPython's default: 700). The older generations keep
their defaults (a collection of the next one every 10 of the one before)."""


def settle() -> None:
    """Collect once, freeze what is left, and make young collections rarer (see the module docstring)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
