"""The hub's listening sockets, taken before anything else starts, and uvicorn's HTTP protocol with a header timeout.

Every port is claimed first, so a port another process holds stops the hub with one line (``cannot listen on
127.0.0.1:8000 (REST): address already in use``) before it has connected to anything. Left to uvicorn, a busy port
was a log line and a ``sys.exit`` inside a task among running services (tracebacks, and once a SIGSEGV on the way
out). gRPC cannot adopt a socket, so its port is probed the same way and gRPC binds it itself, without
SO_REUSEPORT (see :mod:`server.grpc.server`).

uvicorn gives a client unlimited time to send its request headers: its keep-alive timeout only runs between
requests, and h11's size limit does not bound time. A client that opens connections and trickles one header line
at a time (slowloris) would hold them all. :class:`HeaderTimeoutProtocol` closes a connection whose headers are not
complete within ``--http-read-timeout`` of its opening, or of the first byte of its next request.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from typing import ClassVar, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class ListenError(Exception):
    """A port cannot be listened on; the message is the one line a user sees."""


def _describe(exc: OSError) -> str:
    text = os.strerror(exc.errno) if exc.errno else str(exc)
    return text[:1].lower() + text[1:]


def _address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int] | tuple[str, int, int, int]]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(errno.EADDRNOTAVAIL, f"cannot resolve {host!r}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    return family, cast(tuple[str, int], address)


def bind(host: str, port: int, name: str) -> socket.socket:
    """A TCP socket bound to ``host:port`` (SO_REUSEADDR, as uvicorn binds; never SO_REUSEPORT)."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    sock: socket.socket | None = None
    try:
        family, address = _address(host, port)
        # NB: IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto says TCP. Without it
        # Nagle held each response's body until the client's delayed ACK of its headers, 40 ms per keep-alive request.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise ListenError(f"cannot listen on {shown} ({name}): {_describe(exc)}") from None
    sock.set_inheritable(True)
    return sock


def probe(host: str, port: int, name: str) -> None:
    """ListenError unless ``host:port`` is free now (for a listener that binds its own socket)."""
    bind(host, port, name).close()


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose request headers are too slow."""

    header_timeout: ClassVar[float] = 5.0
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def http_protocol(header_timeout: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class for uvicorn's ``http=`` option, with this header timeout."""
    attributes = {"header_timeout": header_timeout}
    return cast(type[HeaderTimeoutProtocol], type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), attributes))
