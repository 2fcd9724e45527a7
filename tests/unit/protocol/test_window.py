"""The publish window: FIFO, resizable by each CONNACK, and no slot lost to a cancelled waiter."""

from __future__ import annotations

import asyncio

import pytest

from protocol.window import Window


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_admits_up_to_the_limit_then_serves_waiters_in_order() -> None:
    window = Window(2)
    await window.acquire()
    await window.acquire()
    order: list[int] = []

    async def wait(n: int) -> None:
        await window.acquire()
        order.append(n)

    waiters = [asyncio.create_task(wait(n)) for n in range(3)]
    await _settle()
    assert (order, window.used, window.waiting) == ([], 2, 3)
    window.release()
    await _settle()
    assert order == [0]
    window.release()
    window.release()
    await _settle()
    assert order == [0, 1, 2]
    assert window.used == 2  # three slots came back, the three waiters took them
    await asyncio.gather(*waiters)


async def test_a_newcomer_does_not_overtake_a_waiter() -> None:
    window = Window(1)
    await window.acquire()
    first = asyncio.create_task(window.acquire())
    await _settle()
    window.release()  # the slot is handed to the waiter, not left for whoever comes next
    late = asyncio.create_task(window.acquire())
    await _settle()
    assert first.done()
    assert not late.done()
    window.release()
    await asyncio.wait_for(late, 1)


async def test_shrinking_admits_no_one_until_enough_slots_return() -> None:
    window = Window(3)
    for _ in range(3):
        await window.acquire()
    window.set_limit(1)  # a reconnect to a broker with a smaller Receive Maximum
    waiter = asyncio.create_task(window.acquire())
    window.release()
    window.release()
    await _settle()
    assert not waiter.done()  # 1 in use = the new limit
    window.release()
    await asyncio.wait_for(waiter, 1)
    assert window.used == 1


async def test_growing_wakes_waiters() -> None:
    window = Window(1)
    await window.acquire()
    waiters = [asyncio.create_task(window.acquire()) for _ in range(2)]
    await _settle()
    window.set_limit(3)
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert window.used == 3


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    window = Window(1)
    await window.acquire()
    gone = asyncio.create_task(window.acquire())
    stays = asyncio.create_task(window.acquire())
    await _settle()
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert window.waiting == 1
    window.release()
    await asyncio.wait_for(stays, 1)
    assert window.used == 1


async def test_a_slot_handed_over_as_the_waiter_is_cancelled_comes_back() -> None:
    window = Window(1)
    await window.acquire()
    waiter = asyncio.create_task(window.acquire())
    await _settle()
    window.release()  # hands the slot to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert window.used == 0
    await asyncio.wait_for(window.acquire(), 1)


def test_the_limit_is_at_least_one() -> None:
    assert Window(0).limit == 1
    window = Window(5)
    window.set_limit(-3)
    assert window.limit == 1
