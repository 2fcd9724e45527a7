"""Status hashes: what the hub and the agents compare during a status resync.

The hash is the lowercase hex SHA-256 of the status serialised as compact JSON with sorted keys, so that two
processes (or Python and a JSONB round trip through PostgreSQL, which reorders keys) agree on it. An empty
status (``None`` or ``{}``: nothing reported yet) hashes the empty string, as upstream's hub does for a
resource without a status, so an agent that has reported nothing is never asked to re-send an empty status.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from protocol.errors import ProtocolError

EMPTY_HASH: Final = hashlib.sha256(b"").hexdigest()


def canonical_json(value: Any) -> bytes:
    """Compact, key-sorted UTF-8 JSON: the byte form the hash is taken over."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"status is not JSON-serialisable: {exc}") from None


def status_hash(status: Mapping[str, Any] | None) -> str:
    """SHA-256 hex of ``status``; see the module docstring for the empty case."""
    if not status:
        return EMPTY_HASH
    return hashlib.sha256(canonical_json(status)).hexdigest()
