"""The event loop the hub's processes run on: uvloop (libuv) where it is installed, asyncio's own otherwise.

Every hub process spends its CPU in the loop's I/O paths (HTTP requests, PostgreSQL round trips, MQTT publishes);
uvloop does that work in C: bench/README.md (``vs_apiserver.py``) measured ~18 % less hub CPU per create with it.
asyncpg, uvicorn, gmqtt, amqtt and grpc.aio all run on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on uvloop when it is available."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a platform without uvloop wheels
        return asyncio.run(main)
    return uvloop.run(main)
