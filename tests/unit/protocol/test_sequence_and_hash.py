"""Sequence ids, status hashes and resync batching."""

from __future__ import annotations

import hashlib
import json

import pytest

from protocol import resync, sequence, statushash
from protocol.errors import PayloadTooLargeError, ProtocolError


def test_ids_strictly_increase_even_with_a_stuck_or_backward_clock() -> None:
    now = [sequence.EPOCH_MS + 1000]
    gen = sequence.SequenceGenerator(clock_ms=lambda: now[0])
    ids = [gen.next_int() for _ in range(10_000)]  # > 4096 per ms: borrows the next milliseconds
    now[0] -= 500  # clock goes backwards
    ids += [gen.next_int() for _ in range(10)]
    assert ids == sorted(set(ids))


def test_layout_matches_snowflake() -> None:
    gen = sequence.SequenceGenerator(node=5, clock_ms=lambda: sequence.EPOCH_MS + 1234)
    value = gen.next_int()
    assert value >> 22 == 1234
    assert (value >> 12) & sequence.MAX_NODE == 5
    assert value & sequence.MAX_STEP == 0
    assert sequence.timestamp_ms(str(value)) == sequence.EPOCH_MS + 1234


def test_compare() -> None:
    gen = sequence.SequenceGenerator()
    first, second = gen.next(), gen.next()
    assert sequence.is_newer(second, first)
    assert not sequence.is_newer(first, second)
    assert not sequence.is_newer(first, first)
    assert sequence.is_newer(first, None)
    assert sequence.is_newer(first, "")
    assert sequence.is_newer(int(second), first)
    with pytest.raises(ProtocolError):
        sequence.is_newer("abc", first)
    with pytest.raises(ValueError, match="node"):
        sequence.SequenceGenerator(node=1024)


def test_status_hash_is_stable_and_matches_sha256_of_canonical_json() -> None:
    status = {"resourceStatus": [{"b": 1, "a": [1, 2]}], "conditions": [{"type": "Applied", "status": "True"}]}
    reordered = json.loads(json.dumps({"conditions": status["conditions"], "resourceStatus": status["resourceStatus"]}))
    assert statushash.status_hash(status) == statushash.status_hash(reordered)
    expected = hashlib.sha256(json.dumps(status, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert statushash.status_hash(status) == expected
    assert statushash.status_hash(None) == statushash.status_hash({}) == hashlib.sha256(b"").hexdigest()
    assert statushash.status_hash({"conditions": []}) != statushash.EMPTY_HASH


def test_batches_respect_item_and_byte_limits() -> None:
    hashes = [(f"id-{i:05d}", "h" * 64) for i in range(2500)]
    batches = resync.status_resync_payloads(hashes)
    assert [len(b["statusHashes"]) for b in batches] == [1000, 1000, 500]
    small = resync.status_resync_payloads(hashes, max_bytes=10_000)
    for batch in small:
        assert len(json.dumps(batch, separators=(",", ":"))) <= 10_000
    assert sum(len(b["statusHashes"]) for b in small) == 2500
    flat = [(h["resourceID"], h["statusHash"]) for b in small for h in b["statusHashes"]]
    assert flat == hashes


def test_empty_list_still_yields_one_payload() -> None:
    assert resync.status_resync_payloads([]) == [{"statusHashes": []}]
    assert resync.spec_resync_payloads([]) == [{"resourceVersions": []}]
    assert resync.spec_resync_payloads([("a", 2)]) == [
        {"resourceVersions": [{"resourceID": "a", "resourceVersion": 2}]}
    ]


def test_oversized_item_is_refused() -> None:
    with pytest.raises(PayloadTooLargeError):
        resync.batches(["x" * 100], key="k", max_bytes=50)
    with pytest.raises(ValueError, match="max_items"):
        resync.batches([], key="k", max_items=0)
