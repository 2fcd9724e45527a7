"""Resync payloads, split into batches that fit the broker.

A hub with tens of thousands of resources per consumer cannot put every ``(resourceID, statusHash)`` into one
event: upstream caps an event at 1000 entries and refuses events over 512 KiB (Azure Event Grid's packet
limit).
:func:`batches` keeps both limits. An empty list still yields one (empty) payload, because an empty status
resync means "send me everything" and an empty spec resync means "I have nothing".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final, TypeVar

from protocol import payloads, types
from protocol.errors import PayloadTooLargeError

DEFAULT_MAX_BYTES: Final = 512 * 1024
DEFAULT_MAX_ITEMS: Final = 1000

T = TypeVar("T")


def _size(value: Any) -> int:
    return len(types.to_json(value).encode("utf-8"))


def batches(
    items: Sequence[T],
    *,
    key: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> list[dict[str, list[T]]]:
    """Split ``items`` into ``{key: [...]}`` payloads whose compact JSON is at most ``max_bytes`` long."""
    if max_items < 1:
        raise ValueError("max_items must be at least 1")
    if len(items) <= max_items and _size(whole := {key: list(items)}) <= max_bytes:
        return [whole]  # NB: the common case, one encode instead of one per item.
    envelope = _size({key: []})
    result: list[dict[str, list[T]]] = []
    current: list[T] = []
    size = envelope
    for item in items:
        item_size = _size(item)
        if envelope + item_size > max_bytes:
            raise PayloadTooLargeError(envelope + item_size, max_bytes)
        extra = item_size + (1 if current else 0)  # NB: the comma between list entries.
        if current and (size + extra > max_bytes or len(current) >= max_items):
            result.append({key: current})
            current, size, extra = [], envelope, item_size
        current.append(item)
        size += extra
    if current or not result:
        result.append({key: current})
    return result


def spec_resync_payloads(
    versions: Iterable[tuple[str, int]],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> list[payloads.SpecResyncRequest]:
    """Data for the agent's ``spec.resync_request`` events, from ``(resource id, version)`` pairs."""
    items = [payloads.ResourceVersion(resourceID=rid, resourceVersion=v) for rid, v in versions]
    return [
        payloads.SpecResyncRequest(resourceVersions=b["resourceVersions"])
        for b in batches(items, key="resourceVersions", max_bytes=max_bytes, max_items=max_items)
    ]


def status_resync_payloads(
    hashes: Iterable[tuple[str, str]],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> list[payloads.StatusResyncRequest]:
    """Data for the hub's ``status.resync_request`` events, from ``(resource id, status hash)`` pairs."""
    items = [payloads.ResourceStatusHash(resourceID=rid, statusHash=h) for rid, h in hashes]
    return [
        payloads.StatusResyncRequest(statusHashes=b["statusHashes"])
        for b in batches(items, key="statusHashes", max_bytes=max_bytes, max_items=max_items)
    ]
