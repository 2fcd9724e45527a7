"""Whether the database is reachable: which failures mean "unavailable", and the one log line per change.

Every use of the database goes through :func:`server.store.db.connection` or :func:`server.store.db.transaction`,
and those turn a failure that :func:`unavailable` recognises into :class:`server.errors.DatabaseUnavailable`
(a 503 on REST, a condition the loops wait out), and record the state here: the first failure of an outage logs
one WARNING, the first success after it one INFO, per process. Whoever catches ``DatabaseUnavailable`` logs at
DEBUG at most, so an outage under load costs two lines, not a traceback per request.

Unavailable means the server cannot be reached or is not taking work: a refused or reset connection, a lost
session (SQLSTATE class 08, ``ConnectionDoesNotExistError``), a server that is shutting down or starting
(``57P01`` admin shutdown, ``57P02`` crash shutdown, ``57P03`` cannot connect now), no connection slot left
(``53300`` too many connections, ``53000`` insufficient resources for a backend), and asyncpg's "the connection
is closed" or "another operation is in progress" when the session died under or before a query. A timeout is
not: it may be the caller's own.
"""

from __future__ import annotations

import logging
import time

import asyncpg

log = logging.getLogger(__name__)

UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300", "53000"})


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached now (rather than that a statement is wrong)."""
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        return state.startswith("08") or state in UNAVAILABLE_SQLSTATES
    if isinstance(exc, asyncpg.InterfaceError):
        return "closed" in str(exc)  # NB: "connection is closed", "connection was closed in the middle of operation"
    if isinstance(exc, asyncpg.InternalClientError):
        # NB: a pooled connection whose session the server ended while it sat idle (its FATAL "terminating
        # connection" arrives unasked) is left consuming that error, and the next query on it fails with "cannot
        # switch to state N; another operation (2) is in progress". The hub never shares a connection between
        # tasks, so in this hub that message means the lost session.
        return "another operation" in str(exc)
    return isinstance(exc, OSError) and not isinstance(exc, TimeoutError)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Availability:
    """The process's view of the database: down from the first failure until the next success."""

    def __init__(self) -> None:
        self.down_since: float | None = None
        self.failures = 0
        self.outages = 0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.outages += 1
            log.warning("database unavailable (%s): answering 503 and retrying until it is back", describe(exc))

    def succeeded(self, started: float) -> None:
        """An operation begun at ``started`` (``time.monotonic()``) succeeded. Only one begun after the outage
        was noticed ends it: a slow read already under way when the server went away may still finish, and
        must not announce a recovery that the next request contradicts."""
        if self.down_since is None or started <= self.down_since:
            return
        took, self.down_since = time.monotonic() - self.down_since, None
        log.info("database available again after %.1fs (%d operations failed meanwhile)", took, self.failures)
        self.failures = 0


STATE = Availability()


class _PoolNoise(logging.Filter):
    """asyncpg's pool logs a traceback each time it fails to reconnect its minimum size; during an outage that
    is the outage, already logged once."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return error is None or not unavailable(error)


_POOL_LOG = logging.getLogger("asyncpg.pool")
if not any(isinstance(f, _PoolNoise) for f in _POOL_LOG.filters):
    _POOL_LOG.addFilter(_PoolNoise())
