"""Corked sends: the writes of one event loop iteration to a TCP socket leave as one train of segments.

Each ``transport.write`` of a small MQTT packet is a ``send`` of its own, and on loopback every send also runs the
receiver's path in the kernel. Corking the socket (Linux ``TCP_CORK``) at the first write of a loop iteration and
uncorking it at the next iteration sends what that iteration wrote together: the same bytes in the same order, later
by at most one loop iteration. A no-op where the option or the socket is not available.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any, Final

_TCP_CORK: Final[int | None] = getattr(socket, "TCP_CORK", None)


class Cork:
    """Call before each write to ``sock``; the first call of a loop iteration corks it until the next one."""

    __slots__ = ("_corked", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock if _TCP_CORK is not None else None
        self._corked = False

    def __call__(self) -> None:
        if self._corked or self._sock is None:
            return
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 1)
        except OSError:
            self._sock = None  # NB: not a TCP socket after all (or gone): never try again.
            return
        self._corked = True
        asyncio.get_running_loop().call_soon(self._uncork)

    def _uncork(self) -> None:
        self._corked = False
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 0)


def for_transport(transport: asyncio.BaseTransport | None) -> Cork | None:
    """A :class:`Cork` for the socket under ``transport``, or None when it has none."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    return Cork(sock) if sock is not None else None
