"""Rendezvous ownership: deterministic, balanced, and only the leaver's consumers move."""

from __future__ import annotations

from collections import Counter

from server.dispatch.instances import owner


def test_owner_is_deterministic_and_balanced() -> None:
    members = ["maestro-0", "maestro-1", "maestro-2"]
    names = [f"cluster-{i}" for i in range(900)]
    owners = {n: owner(n, members) for n in names}
    assert owners == {n: owner(n, list(reversed(members))) for n in names}  # order of the member list is irrelevant
    counts = Counter(owners.values())
    assert set(counts) == set(members)
    assert min(counts.values()) > 200  # 300 each on average


def test_only_the_leavers_consumers_move() -> None:
    members = ["a", "b", "c", "d"]
    names = [f"c{i}" for i in range(400)]
    before = {n: owner(n, members) for n in names}
    after = {n: owner(n, ["a", "b", "d"]) for n in names}
    moved = {n for n in names if before[n] != after[n]}
    assert moved == {n for n in names if before[n] == "c"}


def test_no_members_no_owner() -> None:
    assert owner("cluster1", []) is None
