"""Schema migrations with yoyo: idempotent, safe to run from several replicas at once (yoyo takes a lock)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from yoyo import get_backend, read_migrations

from server import dsn

log = logging.getLogger(__name__)


def migrations_dir() -> str:
    """The SQL migrations shipped as the top-level ``migrations`` data package (a namespace package: yoyo
    would take an ``__init__.py`` for a migration), falling back to the source checkout."""
    spec = importlib.util.find_spec("migrations")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in [*locations, str(Path(__file__).resolve().parents[1] / "migrations")]:
        if any(Path(location).glob("*.sql")):
            return location
    raise RuntimeError("the migrations directory is missing from this installation")


def apply(url: str) -> int:
    """Apply every pending migration; returns how many were applied."""
    backend = get_backend(dsn.for_yoyo(url))
    migrations = read_migrations(migrations_dir())
    try:
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
    finally:
        backend.connection.close()
    for m in pending:
        log.info("applied migration %s", m.id)
    return len(pending)
