"""A serving process's heap (server/heap.py): start-up objects frozen, later garbage still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from server import heap


@pytest.fixture
def restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_settle_freezes_what_exists_and_makes_young_collections_rarer(restored: None) -> None:
    heap.settle()
    assert gc.get_freeze_count() > 1000  # NB: at least the imported modules' objects
    assert gc.get_threshold()[0] == heap.YOUNG_THRESHOLD


def test_cycles_made_after_settle_are_still_collected(restored: None) -> None:
    heap.settle()
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    assert gone() is not None  # NB: a cycle: reference counting alone does not free it
    gc.collect()
    assert gone() is None
