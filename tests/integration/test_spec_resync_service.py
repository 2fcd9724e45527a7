"""What an agent that (re)connected is owed (``server.services.spec_resync``), against PostgreSQL."""

from __future__ import annotations

from typing import Any

import databases
import pytest

from server.services import consumers, resources, spec_resync
from server.services.status import Rejected

pytestmark = pytest.mark.timeout(30)


def configmap(name: str, value: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns"},
        "data": {"v": value},
    }


async def test_the_agent_is_owed_what_it_lacks_what_changed_what_is_deleting_and_what_the_hub_forgot(
    database: databases.Database,
) -> None:
    for name in ("east", "west", "north"):
        await consumers.create(database, {"name": name})
    ids = {}
    for name in ("same", "older", "lacking", "deleting"):
        body = {"consumer_name": "east", "manifest": configmap(name)}
        ids[name] = (await resources.create_single(database, body, source="maestro")).row.id
    body = {"consumer_name": "west", "manifest": configmap("elsewhere")}
    elsewhere = (await resources.create_single(database, body, source="maestro")).row.id
    await resources.patch_single(database, ids["older"], {"version": 1, "manifest": configmap("older", "2")})
    await resources.mark_deleting(database, ids["deleting"])
    holds = {ids["same"]: 1, ids["older"]: 1, ids["deleting"]: 1, "forgotten": 3, elsewhere: 1}

    owed = await spec_resync.owed(database, spec_resync.Request("east", "east", "", holds), source_id="maestro")
    assert sorted(r.id for r in owed.rows) == sorted([ids["older"], ids["lacking"], ids["deleting"]])
    assert owed.unknown == {"forgotten": 3, elsewhere: 1}  # NB: another consumer's resource is not this agent's
    assert owed.known == 4

    # A consumer with nothing is still told to delete what its agent holds.
    nothing = spec_resync.Request("north", "north", "maestro", {"x": 1})
    empty = await spec_resync.owed(database, nothing, source_id="maestro")
    assert (empty.rows, empty.unknown, empty.known) == ([], {"x": 1}, 0)

    for request, reason in [
        (spec_resync.Request("east", "west", "", holds), "consumer_mismatch"),
        (spec_resync.Request("east", "east", "someone-else", holds), "foreign_source"),
    ]:
        with pytest.raises(Rejected) as caught:
            await spec_resync.owed(database, request, source_id="maestro")
        assert caught.value.reason == reason
