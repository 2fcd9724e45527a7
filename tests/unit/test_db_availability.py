"""Which failures mean "the database is unavailable" (one place: server.store.availability), and the status ingest's
bounded hold of statuses it could not store."""

from __future__ import annotations

import time

import asyncpg
import pytest

from server.dispatch import ingest
from server.services.status import StatusReport
from server.settings import Settings
from server.store import availability


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        ConnectionResetError(),
        OSError(113, "No route to host"),
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CrashShutdownError("crash"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.ConnectionFailureError("connection failure"),
        asyncpg.InterfaceError("cannot call Transaction.__aexit__(): the underlying connection is closed"),
        asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
    ],
)
def test_unavailable(exc: BaseException) -> None:
    assert availability.unavailable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError(),  # NB: may be the caller's own deadline
        ValueError("bad"),
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.PostgresSyntaxError("syntax"),
        asyncpg.QueryCanceledError("statement timeout"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        asyncpg.InternalClientError("unexpected"),
    ],
)
def test_not_unavailable(exc: BaseException) -> None:
    assert not availability.unavailable(exc)


def test_one_line_per_change(caplog: pytest.LogCaptureFixture) -> None:
    state = availability.Availability()
    caplog.set_level("INFO", logger="server.store.availability")
    for _ in range(100):
        state.failed(ConnectionRefusedError(111, "refused"))
    state.succeeded(time.monotonic())
    state.succeeded(time.monotonic())
    state.failed(ConnectionRefusedError(111, "refused"))
    levels = [r.levelname for r in caplog.records if r.name == "server.store.availability"]
    assert levels == ["WARNING", "INFO", "WARNING"]
    assert (state.down, state.outages) == (True, 2)


def test_an_operation_begun_before_the_outage_does_not_end_it(caplog: pytest.LogCaptureFixture) -> None:
    # NB: a read already under way when PostgreSQL went away may still finish after another has failed.
    state = availability.Availability()
    caplog.set_level("INFO", logger="server.store.availability")
    before = time.monotonic()
    state.failed(ConnectionRefusedError(111, "refused"))
    state.succeeded(before)
    assert state.down
    state.failed(ConnectionRefusedError(111, "refused"))
    state.succeeded(time.monotonic())
    levels = [r.levelname for r in caplog.records if r.name == "server.store.availability"]
    assert levels == ["WARNING", "INFO"]
    assert (state.down, state.outages) == (False, 1)


def report(rid: str, consumer: str, sequence_id: str) -> StatusReport:
    return StatusReport(
        consumer=consumer,
        resource_id=rid,
        version=1,
        sequence_id=sequence_id,
        status_hash=sequence_id,
        conditions=[],
        resource_status=[],
        cluster_name=consumer,
        original_source="s",
    )


def test_held_statuses_are_bounded_and_the_newest_per_resource_wins() -> None:
    hub = ingest.Ingest(None, None, Settings.of(ingest_hold_limit=2), source_events="x")  # type: ignore[arg-type]
    hub.hold(report("r1", "c1", "1"))
    hub.hold(report("r2", "c2", "2"))
    hub.hold(report("r1", "c1", "3"))  # newer status of r1: replaces the held one, and is now the youngest
    assert [(r.resource_id, r.sequence_id) for r in hub.held.values()] == [("r2", "2"), ("r1", "3")]
    hub.hold(report("r3", "c3", "4"))  # over the limit: the oldest (r2) is let go, its consumer resynced later
    assert [(r.resource_id, r.sequence_id) for r in hub.held.values()] == [("r1", "3"), ("r3", "4")]
    assert hub._let_go == {"c2"}
