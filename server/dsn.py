"""One configured database URL, rewritten for each driver that needs it.

Users give one URL (``postgresql://user:pass@host:port/db?sslmode=...``). ``databases``/asyncpg want the
``postgresql+asyncpg`` scheme or a plain ``postgresql`` one, yoyo wants ``postgresql+psycopg`` (psycopg 3; the
plain scheme would need psycopg2), and raw asyncpg connections want the plain libpq form.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg", "postgresql+psycopg", "postgresql+psycopg2")


def _split(url: str) -> tuple[str, str]:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _SCHEMES:
        raise ValueError(f"unsupported database URL {redact(url)!r}: expected postgresql://user@host:port/db")
    return scheme, rest


def plain(url: str) -> str:
    """The libpq form understood by asyncpg.connect()."""
    return "postgresql://" + _split(url)[1]


def for_databases(url: str) -> str:
    return "postgresql+asyncpg://" + _split(url)[1]


def for_yoyo(url: str) -> str:
    return "postgresql+psycopg://" + _split(url)[1]


def redact(url: str) -> str:
    """The URL with its password replaced, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
