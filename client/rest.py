"""A small blocking REST client for the hub's API (``/api/maestro/v1``), on the standard library.

``http.client`` rather than httpx: a CLI pays for its imports on every run, and httpx (with h11, anyio,
certifi and ssl) takes longer to import than this whole command takes to list a thousand bundles. One
keep-alive connection is reused across the requests of a command (``--wait`` polls on it).

Every failure becomes an error of :mod:`client.errors`: the hub's error body (``{kind: "Error", reason, code,
…}``, reference §1.4) becomes :class:`APIError` with its ``reason``; anything without an answer becomes
:class:`UnreachableError`. Idempotent requests (GET, DELETE, and a create that names its own ``id``: the hub
answers a repeat with the resource the first one made) are retried once on a fresh connection when a reused
keep-alive connection turns out to have been closed by the hub, and again while the hub answers 503 (its database
is unavailable, e.g. during a failover), after the ``Retry-After`` it names, for up to ``unavailable_patience``
seconds in all.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import urllib.parse
from collections.abc import Generator, Iterator, Mapping
from typing import Any, Final

from client.errors import APIError, UnreachableError

API_PATH: Final = "/api/maestro/v1"
DEFAULT_URL: Final = "http://127.0.0.1:8000"
_RETRYABLE: Final = frozenset({"GET", "DELETE"})
#: The longest single wait on a 503's ``Retry-After`` (a proxy may name minutes; the patience bounds the total).
_MAX_RETRY_AFTER: Final = 5.0
_BODY_SNIPPET: Final = 200
#: Parameters sent even when empty (other empty ones are left out): an empty ``after`` starts a cursor walk.
_KEEP_EMPTY: Final = frozenset({"after"})


class Rest:
    """The hub at ``url`` (``http[s]://host:port``, with or without the API path), as JSON in and out."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        insecure: bool = False,
        unavailable_patience: float = 30.0,
    ) -> None:
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UnreachableError(f"--rest-url {url!r} is not an http:// or https:// URL")
        self.url = url
        self.timeout = timeout
        self.unavailable_patience = unavailable_patience
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        try:
            self._port = parts.port
        except ValueError:
            raise UnreachableError(f"--rest-url {url!r} has an invalid port") from None
        base = parts.path.rstrip("/")
        self._base = base if base.endswith(API_PATH) else base + API_PATH
        self._insecure = insecure
        self._headers = {"Accept": "application/json", "User-Agent": "maestro-cli"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._conn: http.client.HTTPConnection | None = None

    # --- JSON requests
    # ---------------------------------------------------------------------------------------

    def get(self, path: str, params: Mapping[str, object] | None = None, *, timeout: float | None = None) -> Any:
        return self.request("GET", path, params=params, timeout=timeout)

    def post(self, path: str, body: object, *, idempotent: bool = False) -> Any:
        """``idempotent``: the body names its ``id``, so sending it again cannot make a second resource."""
        return self.request("POST", path, body=body, idempotent=idempotent)

    def put(self, path: str, body: object) -> Any:
        return self.request("PUT", path, body=body)

    def patch(self, path: str, body: object) -> Any:
        return self.request("PATCH", path, body=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | None = None,
        body: object = None,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> Any:
        """Send one request and return the decoded JSON body (``None`` for an empty one, e.g. 204)."""
        target = self._target(path, params)
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode("utf-8")
            headers["Content-Type"] = "application/json"
        resendable = method in _RETRYABLE or idempotent
        waited = 0.0
        while True:
            response, raw = self._exchange(method, target, data, headers, timeout, resendable=resendable)
            if response.status == 503 and resendable and waited < self.unavailable_patience:
                delay = min(_retry_after(response), _MAX_RETRY_AFTER, self.unavailable_patience - waited)
                time.sleep(delay)
                waited += max(delay, 0.1)  # NB: a hub that says "retry now" still ends the patience
                continue
            return _decode(response.status, response.reason, raw)

    def _exchange(
        self,
        method: str,
        target: str,
        data: bytes | None,
        headers: dict[str, str],
        timeout: float | None,
        *,
        resendable: bool,
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """One request and its answer; resent once on a fresh connection if a reused one was closed under it."""
        for attempt in (1, 2):
            reused = self._conn is not None
            conn = self._connection(timeout)
            try:
                conn.request(method, target, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                stale = isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError)
                if attempt == 1 and reused and stale and resendable:
                    continue
                raise self._unreachable(exc, timeout) from None
            if response.will_close:
                self.close()
            return response, raw
        raise AssertionError("unreachable")  # pragma: no cover

    def pages(self, path: str, params: Mapping[str, object] | None = None, *, size: int = 400) -> Iterator[Any]:
        """Every item of a list endpoint, page after page (upstream's Go client keeps pages at 400 or less).

        Walks the hub's keyset cursor (``after`` / ``next``: each page costs the same at any depth, and rows
        created or deleted meanwhile move no other row); a hub that answers without ``next`` (upstream's) is paged
        by number."""
        body = self.get(path, {**(params or {}), "after": "", "size": size})
        if "next" in body:
            while True:
                yield from body.get("items") or []
                if not body.get("next"):
                    return
                body = self.get(path, {**(params or {}), "after": body["next"], "size": size})
        page = 1
        while True:
            items = body.get("items") or []
            yield from items
            if len(items) < size or page * size >= int(body.get("total") or 0):
                return
            page += 1
            body = self.get(path, {**(params or {}), "page": page, "size": size})

    # --- streams
    # ---------------------------------------------------------------------------------------------

    def lines(
        self, path: str, params: Mapping[str, object] | None = None, *, idle: float
    ) -> Generator[bytes, None, None]:
        """The lines of a streamed response (the REST watch), on a connection of its own.

        The first item is ``b""``, as soon as the hub has answered (the stream has started). Ends when the hub
        closes the stream cleanly; a stream cut short (the hub died, ``idle`` seconds without a byte: the hub sends
        a keepalive line every 15 s) raises :class:`UnreachableError`.
        """
        conn = self._new_connection(idle)
        headers = {**self._headers, "Accept": "application/x-ndjson"}
        try:
            try:
                conn.request("GET", self._target(path, params), headers=headers)
                response = conn.getresponse()
                if response.status >= 400:
                    _decode(response.status, response.reason, response.read())
                yield b""
                while line := response.readline():
                    yield line
            except (OSError, http.client.HTTPException) as exc:
                raise self._unreachable(exc, idle) from None
        finally:
            conn.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- internals
    # -------------------------------------------------------------------------------------------

    def _target(self, path: str, params: Mapping[str, object] | None) -> str:
        target = self._base + "/" + path.lstrip("/")
        query = {k: str(v) for k, v in (params or {}).items() if v is not None and (v != "" or k in _KEEP_EMPTY)}
        return f"{target}?{urllib.parse.urlencode(query)}" if query else target

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = self._new_connection(self.timeout)
        self._conn.timeout = timeout if timeout is not None else self.timeout
        if self._conn.sock is not None:
            self._conn.sock.settimeout(self._conn.timeout)
        return self._conn

    def _new_connection(self, timeout: float) -> http.client.HTTPConnection:
        if not self._https:
            return http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        context = ssl.create_default_context()
        if self._insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=context)

    def _unreachable(self, exc: BaseException, timeout: float | None) -> UnreachableError:
        where = f"the hub at {self.url}"
        if isinstance(exc, socket.timeout | TimeoutError):
            return UnreachableError(f"{where} did not answer within {timeout or self.timeout:g}s")
        if isinstance(exc, http.client.RemoteDisconnected | http.client.IncompleteRead):
            return UnreachableError(f"{where} closed the connection")
        if isinstance(exc, ssl.SSLError):
            return UnreachableError(f"TLS with {where} failed: {exc.reason or exc}")
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        return UnreachableError(f"cannot reach {where}: {reason}")


def _retry_after(response: http.client.HTTPResponse) -> float:
    """The seconds a 503 asks to wait (1 when it names none, or an HTTP date, which the hub never sends)."""
    try:
        return max(0.0, float(response.getheader("Retry-After") or 1))
    except ValueError:
        return 1.0


def _decode(status: int, phrase: str, raw: bytes) -> Any:
    if status >= 400:
        raise _error(status, phrase, raw)
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise APIError(f"the hub answered HTTP {status} with a body that is not JSON", status=status) from None


def _error(status: int, phrase: str, raw: bytes) -> APIError:
    """The hub's error body as an :class:`APIError`; a proxy's HTML page as its status line and a snippet."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("reason"), str) and body["reason"]:
        code = body.get("code")
        return APIError(body["reason"], status=status, code=code if isinstance(code, str) else None)
    snippet = raw.decode("utf-8", errors="replace").strip()[:_BODY_SNIPPET]
    return APIError(f"HTTP {status} {phrase}" + (f": {snippet}" if snippet else ""), status=status)
