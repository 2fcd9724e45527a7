"""``maestro admin rebuild``: compare the ``resources`` table with what the event logs say, and optionally make it
so (see :mod:`server.store.replay` for how the logs are read)."""

from __future__ import annotations

from dataclasses import dataclass

import databases

from server.store import replay
from server.store.db import transaction


@dataclass(frozen=True)
class Outcome:
    differences: list[replay.Difference]
    applied: dict[str, int] | None
    """What ``--apply`` changed (rows inserted, updated, deleted); None for a dry run."""


async def rebuild(db: databases.Database, *, apply: bool) -> Outcome:
    """Dry run: every difference, read in one snapshot. Apply: the same, under a lock that holds writers, then
    the table rebuilt in the same transaction (a concurrent write waits, and lands on the rebuilt row)."""
    async with transaction(db) as conn:
        await replay.tune(conn)
        if not apply:
            return Outcome(await replay.compare(conn), None)
        await replay.lock(conn)
        differences = await replay.compare(conn)
        changed = await replay.apply(conn, differences)
    return Outcome(differences, changed)


def describe(difference: replay.Difference) -> str:
    """One line for an operator."""
    d = difference
    if d.verdict == "missing":
        return f"missing   {d.id}: in the log (version {d.logged['version']}), not in the table"
    if d.verdict == "deleted":
        return f"deleted   {d.id}: the log says its delete completed, the table still has it"
    if d.verdict == "unlogged":
        return (
            f"unlogged  {d.id}: the log holds no spec of it (written before the event payload migration, or its"
            " events were removed): left as it is"
        )
    parts = []
    for name in d.fields:
        logged, stored = d.logged[name], d.stored[name]
        if name in ("payload", "status"):
            parts.append(f"{name} differs")
        else:
            parts.append(f"{name}: log {logged!r}, table {stored!r}")
    return f"differs   {d.id}: " + "; ".join(parts)
