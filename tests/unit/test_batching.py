"""The group commit's queue: a lone write runs at once; what arrives meanwhile is batched, bounded, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from server.store.batching import GroupCommit


class Store:
    """Records the statements run; ``gate`` holds the one in flight."""

    def __init__(self) -> None:
        self.statements: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None
        self.singles = 0

    async def single(self, item: int) -> str:
        self.statements.append([item])
        self.singles += 1
        await self.gate.wait()
        return f"row {item}"

    async def batch(self, items: Sequence[int]) -> list[str]:
        self.statements.append(list(items))
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [f"row {i}" for i in items]


async def test_a_write_alone_runs_its_single_statement_at_once() -> None:
    store = Store()
    commit = GroupCommit(store.single, store.batch)
    assert await commit.write(1) == "row 1"
    assert await commit.write(2) == "row 2"
    assert store.statements == [[1], [2]]


async def in_flight(commit: GroupCommit[int, str], item: int) -> asyncio.Task[str]:
    """A write whose statement has started (a lone write yields one turn of the loop first)."""
    task = asyncio.create_task(commit.write(item))
    for _ in range(3):
        await asyncio.sleep(0)
    return task


async def test_writes_arriving_meanwhile_are_batched_in_order_and_bounded() -> None:
    store = Store()
    commit = GroupCommit(store.single, store.batch, max_size=3)
    store.gate.clear()
    tasks = [await in_flight(commit, 0)]
    tasks += [asyncio.create_task(commit.write(i)) for i in range(1, 8)]
    await asyncio.sleep(0)
    store.gate.set()
    assert await asyncio.gather(*tasks) == [f"row {i}" for i in range(8)]
    assert store.statements == [[0], [1, 2, 3], [4, 5, 6], [7]]
    assert store.singles == 2  # the first, alone, and the last, a batch of one
    # Idle again: the next write runs alone.
    assert await commit.write(9) == "row 9"
    assert store.statements[-1] == [9]


async def test_a_failed_batch_fails_each_of_its_writes_and_not_the_next() -> None:
    store = Store()
    commit = GroupCommit(store.single, store.batch)
    store.gate.clear()
    first = asyncio.create_task(commit.write(0))
    await asyncio.sleep(0)
    batched = [asyncio.create_task(commit.write(i)) for i in (1, 2)]
    await asyncio.sleep(0)
    store.fail = RuntimeError("down")
    store.gate.set()
    assert await first == "row 0"
    for task in batched:
        with pytest.raises(RuntimeError, match="down"):
            await task
    store.fail = None
    assert await commit.write(3) == "row 3"


async def test_a_write_cancelled_while_queued_is_left_out_and_the_others_go_on() -> None:
    store = Store()
    commit = GroupCommit(store.single, store.batch)
    store.gate.clear()
    tasks = [await in_flight(commit, 0)]
    tasks += [asyncio.create_task(commit.write(i)) for i in range(1, 4)]
    await asyncio.sleep(0)
    tasks[2].cancel()
    store.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[:2] == ["row 0", "row 1"]
    assert isinstance(results[2], asyncio.CancelledError)
    assert results[3] == "row 3"
    assert store.statements == [[0], [1, 3]]


async def test_the_leader_cancelled_still_hands_the_queue_on() -> None:
    store = Store()
    commit = GroupCommit(store.single, store.batch)
    store.gate.clear()
    leader = asyncio.create_task(commit.write(0))
    await asyncio.sleep(0)
    queued = [asyncio.create_task(commit.write(i)) for i in (1, 2)]
    await asyncio.sleep(0)
    leader.cancel()
    store.gate.set()
    assert await asyncio.gather(*queued) == ["row 1", "row 2"]
    assert store.statements == [[0], [1, 2]]


async def test_writes_arriving_in_one_turn_of_the_loop_share_the_first_ones_statement() -> None:
    store = Store()
    commit = GroupCommit(store.single, store.batch, max_size=3)
    tasks = [asyncio.create_task(commit.write(i)) for i in range(5)]
    assert await asyncio.gather(*tasks) == [f"row {i}" for i in range(5)]
    assert store.statements == [[0, 1, 2], [3, 4]]
    assert store.singles == 0


async def test_a_lone_write_cancelled_before_its_statement_hands_the_queue_on() -> None:
    store = Store()
    commit = GroupCommit(store.single, store.batch)
    first, second = asyncio.create_task(commit.write(0)), asyncio.create_task(commit.write(1))
    await asyncio.sleep(0)  # NB: the first yields its one turn, and the second queues behind it meanwhile
    assert commit.queued == 1
    first.cancel()
    assert await second == "row 1"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert store.statements == [[1]]
    assert await commit.write(2) == "row 2"
