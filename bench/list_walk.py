"""Benchmark: the hub alone walking a list by cursor against reading it in one request, for one or two hub trees.

Starts a throwaway PostgreSQL (``rest_creates.py``'s), migrates a fresh database, starts ``maestro server`` from each
``--hub-src`` tree (default: this one) on the same database, creates ``--works`` resource-bundles through the first
hub (the README's nginx Deployment each, consumer ``cluster1``, as ``vs_apiserver.py`` does), then ``--repeats``
times, alternating the hubs (and which goes first), walks all bundles with ``?after=`` in pages of ``--page`` and
reads them in one request (``?size=N``). Prints per hub the median time from request to last byte (JSON decoding
not timed) of the walk and of the one request, their ratio, and with two hubs the median of the paired walk
differences: the machine being shared, the pairs say more than the medians.

    .venv/bin/python bench/list_walk.py                                        # this tree, 3,100 bundles
    git archive <commit> | tar -x -C /tmp/old
    .venv/bin/python bench/list_walk.py --hub-src /tmp/old --hub-src .        # before | after
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rest_creates import fresh_database, hub_process, throwaway_postgres  # noqa: E402
from vs_apiserver import CONSUMER, bundle_body  # noqa: E402

BUNDLES = "/api/maestro/v1/resource-bundles"


@contextlib.contextmanager
def hub(src: Path, db_url: str) -> Iterator[str]:
    """``maestro server`` run from the tree ``src``; yields its REST base URL; SIGTERM on exit."""
    with hub_process(["--db-url", db_url], src=src) as (_, ports):
        yield f"http://127.0.0.1:{ports.rest}"


async def create(base: str, works: int) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        (await client.post("/api/maestro/v1/consumers", json={"name": CONSUMER})).raise_for_status()
        names = iter(range(works))

        async def worker() -> None:
            for i in names:
                (await client.post(BUNDLES, json=bundle_body(f"work-{i}"))).raise_for_status()

        await asyncio.gather(*(worker() for _ in range(8)))


def timed(client: httpx.Client, params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    began = time.perf_counter()
    response = client.get(BUNDLES, params=params)
    body = response.content
    spent = time.perf_counter() - began
    response.raise_for_status()
    page: dict[str, Any] = json.loads(body)
    return spent, page


def walk(client: httpx.Client, size: int) -> tuple[float, int]:
    """Milliseconds in requests and items read, walking by cursor."""
    spent, items, params = 0.0, 0, {"after": "", "size": size}
    while True:
        seconds, page = timed(client, params)
        spent, items = spent + seconds, items + len(page["items"])
        if not page.get("next"):
            return spent * 1000, items
        params = {"after": page["next"], "size": size}


def one(client: httpx.Client, works: int) -> tuple[float, int]:
    seconds, page = timed(client, {"size": works})
    return seconds * 1000, len(page["items"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hub-src", type=Path, action="append", help="a hub source tree (repeatable; default .)")
    parser.add_argument("--works", type=int, default=3100, help="bundles to create (default 3100)")
    parser.add_argument("--page", type=int, default=500, help="cursor page size (default 500)")
    parser.add_argument("--repeats", type=int, default=40, help="timed walks and reads per hub (default 40)")
    args = parser.parse_args()
    trees = [p.resolve() for p in (args.hub_src or [ROOT])]
    with contextlib.ExitStack() as stack:
        url = fresh_database(stack.enter_context(throwaway_postgres()))
        bases = [stack.enter_context(hub(src, url)) for src in trees]
        asyncio.run(create(bases[0], args.works))
        clients = [stack.enter_context(httpx.Client(base_url=b, timeout=120)) for b in bases]
        for client in clients:  # warm: connections, prepared statements, plans
            for _ in range(3):
                walk(client, args.page)
                one(client, args.works)
        walks: list[list[float]] = [[] for _ in trees]
        ones: list[list[float]] = [[] for _ in trees]
        for r in range(args.repeats):
            order = range(len(trees)) if r % 2 == 0 else reversed(range(len(trees)))
            for i in order:
                ms, items = walk(clients[i], args.page)
                assert items == args.works, (trees[i], items)
                walks[i].append(ms)
                ms, items = one(clients[i], args.works)
                assert items == args.works, (trees[i], items)
                ones[i].append(ms)
    print(f"{args.works} bundles, cursor pages of {args.page}, {args.repeats} interleaved repeats; median ms")
    print(f"{'hub tree':40}  {'walk':>7}  {'one':>7}  walk/one")
    for tree, w, o in zip(trees, walks, ones, strict=True):
        walk_ms, one_ms = statistics.median(w), statistics.median(o)
        print(f"{str(tree)[-40:]:40}  {walk_ms:7.1f}  {one_ms:7.1f}  {walk_ms / one_ms:8.2f}")
    if len(trees) == 2:
        diffs = [b - a for a, b in zip(walks[0], walks[1], strict=True)]
        faster = sum(d < 0 for d in diffs)
        print(
            f"walk, second - first: median {statistics.median(diffs):+.1f} ms; second faster in {faster}/{len(diffs)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
