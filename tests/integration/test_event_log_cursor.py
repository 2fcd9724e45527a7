"""The event-log cursor never skips a late commit and never returns a row twice.

Ids of ``bigserial`` are handed out at insert time, not commit time, so "the last id I saw" is not a safe cursor.
These tests interleave transactions by hand on separate connections, then run random concurrent writers against
a polling reader, and check that the reader sees exactly the committed rows, once each, in ``(xid, id)`` order.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from server.store import logs
from server.store.db import init_connection
from server.store.logs import Cursor

Connect = Callable[[], Awaitable[asyncpg.Connection]]


@pytest.fixture
async def connect(db_url: str) -> AsyncIterator[Connect]:
    opened: list[asyncpg.Connection] = []

    async def open_one() -> asyncpg.Connection:
        conn = await asyncpg.connect(db_url)
        await init_connection(conn)
        opened.append(conn)
        return conn

    try:
        yield open_one
    finally:
        for conn in opened:
            await conn.close()


async def append(conn: asyncpg.Connection, n: int = 0, *, consumer: str = "c1") -> int:
    """A spec event without a payload (as maintenance's re-publish nudges are written)."""
    return int(
        await conn.fetchval(
            "INSERT INTO events (source_id, consumer_name, event_type, version) VALUES ($1, $2, 'Create', 1)"
            " RETURNING id",
            f"r{n}",
            consumer,
        )
    )


async def append_status(conn: asyncpg.Connection, n: int = 0) -> int:
    return await logs.append_status_event(
        conn,
        resource_id=f"r{n}",
        resource_source="maestro",
        resource_type="Single",
        consumer_name="c1",
        event_type="StatusUpdate",
        version=1,
        status={"n": n},
    )


class Reader:
    """Polls a log with a cursor, remembering every row id it was given (duplicates included)."""

    def __init__(self, conn: asyncpg.Connection, log: logs.Log = "events", *, after: Cursor = logs.START) -> None:
        self.conn, self.log, self.cursor = conn, log, after
        self.seen: list[int] = []
        self.order: list[tuple[int, int]] = []

    async def poll(self, *, limit: int = 500) -> list[int]:
        rows, cursor = await logs.read(self.conn, self.log, self.cursor, limit=limit)
        assert cursor >= self.cursor, "the cursor never moves backwards"
        for row in rows:
            position = Cursor(row["xid_int"], row["id"])
            assert position > self.cursor
            assert position <= cursor
            self.order.append((position.xid, position.id))
        self.cursor = cursor
        ids = [row["id"] for row in rows]
        self.seen.extend(ids)
        return ids

    async def drain(self, *, limit: int = 500) -> list[int]:
        out: list[int] = []
        while True:
            ids = await self.poll(limit=limit)
            out.extend(ids)
            if len(ids) < limit:
                return out


# -- hand-made interleavings -------------------------------------------------------------------------


@pytest.mark.parametrize("log", ["events", "status_events"])
async def test_lower_id_committing_last_is_not_skipped(connect: Connect, log: logs.Log) -> None:
    a, b, r = await connect(), await connect(), await connect()
    write = append if log == "events" else append_status
    reader = Reader(r, log)

    tx_a = a.transaction()
    await tx_a.start()
    id_a = await write(a, 1)  # lower id and lower xid, commits last
    tx_b = b.transaction()
    await tx_b.start()
    id_b = await write(b, 2)
    assert id_a < id_b
    await tx_b.commit()

    # B is committed, but A (older) is in flight: reading B now would move the cursor past A's row.
    assert await reader.poll() == []
    assert await reader.poll(limit=1) == []

    await tx_a.commit()
    assert await reader.drain(limit=1) == [id_a, id_b]
    assert await reader.poll() == []
    assert reader.seen == [id_a, id_b]


async def test_earlier_xid_with_later_id(connect: Connect) -> None:
    """A takes its xid first but its row id after B: (xid, id) order puts A first, whatever the ids say."""
    a, b, r = await connect(), await connect(), await connect()
    reader = Reader(r)

    tx_a = a.transaction()
    await tx_a.start()
    xid_a = int(await a.fetchval("SELECT pg_current_xact_id()::text"))
    tx_b = b.transaction()
    await tx_b.start()
    id_b = await append(b, 2)
    id_a = await append(a, 1)
    assert id_b < id_a
    await tx_b.commit()
    assert await reader.poll() == []

    await tx_a.commit()
    assert await reader.poll() == [id_a, id_b]
    assert reader.order[0][0] == xid_a
    assert reader.order == sorted(reader.order)


async def test_rolled_back_rows_never_appear(connect: Connect) -> None:
    a, b, r = await connect(), await connect(), await connect()
    reader = Reader(r)
    tx_a = a.transaction()
    await tx_a.start()
    await append(a, 1)
    id_b = await append(b, 2)  # autocommit
    assert await reader.poll() == []
    await tx_a.rollback()
    assert await reader.poll() == [id_b]
    assert await reader.poll() == []


async def test_many_rows_in_one_transaction_page_by_limit(connect: Connect) -> None:
    w, r = await connect(), await connect()
    async with w.transaction():
        ids = [await append(w, i) for i in range(10)]
    reader = Reader(r)
    pages = [await reader.poll(limit=3) for _ in range(5)]
    assert pages == [ids[0:3], ids[3:6], ids[6:9], ids[9:10], []]


async def test_filtered_read_skips_ahead(connect: Connect) -> None:
    w, r = await connect(), await connect()
    mine = [await append(w, i, consumer="mine") for i in range(3)]
    for i in range(5):
        await append(w, i, consumer="other")
    rows, cursor = await logs.read(r, "events", logs.START, where="consumer_name = $4", params=("mine",))
    assert [row["id"] for row in rows] == mine
    # The page was not full, so the cursor jumped past the filtered-out rows too.
    rows, again = await logs.read(r, "events", cursor, where="consumer_name = $4", params=("mine",))
    assert rows == []
    assert again >= cursor
    assert (await logs.read(r, "events", cursor))[0] == []


# -- head --------------------------------------------------------------------------------------------


async def test_head(connect: Connect) -> None:
    w, r = await connect(), await connect()
    before = [await append(w, i) for i in range(3)]
    head = await logs.head(r)
    after = [await append(w, i) for i in range(2)]
    reader = Reader(r, after=head)
    assert await reader.drain() == after
    assert not set(before) & set(reader.seen)
    assert Cursor.parse(str(head)) == head


async def test_head_with_a_transaction_in_flight(connect: Connect) -> None:
    """head() sits before every transaction still in flight, so a late commit after head is not lost."""
    a, w, r = await connect(), await connect(), await connect()
    tx_a = a.transaction()
    await tx_a.start()
    id_a = await append(a, 1)
    head = await logs.head(r)
    await tx_a.commit()
    id_w = await append(w, 2)
    assert await Reader(r, after=head).drain() == [id_a, id_w]


# -- random concurrent writers -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [20261124, 1, 2])
async def test_concurrent_writers(connect: Connect, seed: int) -> None:
    rng = random.Random(seed)
    committed: set[int] = set()
    rolled_back: set[int] = set()
    writers_done = asyncio.Event()

    async def writer(n: int) -> None:
        conn = await connect()
        local = random.Random(rng.random())
        for _ in range(25):
            tx = conn.transaction()
            await tx.start()
            ids: list[int] = []
            try:
                if local.random() < 0.3:
                    # Take the xid early, insert later: the (xid, id) inversion from the docstring.
                    await conn.fetchval("SELECT pg_current_xact_id()")
                await asyncio.sleep(local.random() * 0.004)
                for _ in range(local.randint(1, 3)):
                    ids.append(await append(conn, n))
                    await asyncio.sleep(local.random() * 0.004)
            except BaseException:
                await tx.rollback()
                raise
            if local.random() < 0.2:
                await tx.rollback()
                rolled_back.update(ids)
            else:
                await tx.commit()
                committed.update(ids)

    async def reader_loop(reader: Reader) -> None:
        local = random.Random(rng.random())
        while not writers_done.is_set():
            await reader.poll(limit=local.randint(1, 4))
            await asyncio.sleep(local.random() * 0.002)
        await reader.drain(limit=3)

    reader = Reader(await connect())
    read_task = asyncio.create_task(reader_loop(reader))
    try:
        await asyncio.gather(*(writer(n) for n in range(8)))
    finally:
        writers_done.set()
        await read_task

    assert len(committed) > 100
    assert rolled_back
    assert len(reader.seen) == len(set(reader.seen)), "no row is returned twice"
    assert set(reader.seen) == committed, "every committed row, and only those"
    assert reader.order == sorted(reader.order), "rows come in (xid, id) order"


# -- Cursor ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "1-",
        "-1",
        "a-1",
        "1-b",
        "1-2-3",
        "1-2\n",
        " 1-2",
        "1 -2",
        "+1-2",
        "1.0-2",
        "\u0661-2",
        "\u00b2-1",
        "18446744073709551616-1",
        "1-9223372036854775808",
        "9" * 100 + "-1",
    ],
)
def test_cursor_parse_errors(text: str) -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        Cursor.parse(text)


@pytest.mark.parametrize("cursor", [logs.START, Cursor(5, 7), Cursor(2**64 - 1, 2**63 - 1)])
def test_cursor_round_trip(cursor: Cursor) -> None:
    assert Cursor.parse(str(cursor)) == cursor


def test_cursor_order() -> None:
    assert Cursor(1, 9) < Cursor(2, 1) < Cursor(2, 2)
    ordered: list[Any] = sorted([Cursor(2, 1), Cursor(1, 9), Cursor(2, 0)])
    assert ordered == [Cursor(1, 9), Cursor(2, 0), Cursor(2, 1)]


async def test_read_after_a_parsed_cursor(connect: Connect) -> None:
    w, r = await connect(), await connect()
    first = await append(w, 1)
    rows, cursor = await logs.read(r, "events", logs.START)
    assert [row["id"] for row in rows] == [first]
    second = await append(w, 2)
    rows, _ = await logs.read(r, "events", Cursor.parse(str(cursor)))
    assert [row["id"] for row in rows] == [second]
