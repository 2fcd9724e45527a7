"""Output: tables that fit the terminal, JSON, YAML, and the small readings of an object the tables need (short
names, ages, conditions).

Tables never wrap: on a terminal (or with ``COLUMNS`` set), when the natural widths do not fit, the columns
marked flexible (consumers, labels, objects) are cut with ``…``; names and ids never are. Into a pipe or a
file nothing is cut, so ``grep`` and ``awk`` see whole values. A name that is the object's own UUID is shown as
its first 8 characters, as ``docker`` and ``git`` shorten ids; every command that takes a name also takes such
a prefix, and ``-o json`` always has the whole id.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TextIO

SHORT_ID: Final = 8
DEFAULT_WIDTH: Final = 80
GAP: Final = "  "
ELLIPSIS: Final = "…"
FORMATS: Final = ("table", "json", "yaml")


@dataclasses.dataclass(frozen=True)
class Column:
    header: str
    flexible: bool = False
    """May be cut to fit the width (never below ``minimum``)."""
    minimum: int = 8


def width(stream: TextIO | None = None) -> int | None:
    """The width to fit tables to: the terminal's (``COLUMNS`` wins), or ``None`` (no limit) for a pipe or file."""
    stream = stream or sys.stdout
    if os.environ.get("COLUMNS", "").isdigit() or stream.isatty():
        return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    return None


def table(columns: Sequence[Column], rows: Iterable[Sequence[str]], *, max_width: int | None = None) -> str:
    """Left-aligned columns two spaces apart; flexible columns shrink (widest first) until the table fits."""
    cells = [[_one_line(c) for c in row] for row in rows]
    widths = [max([len(col.header), *(len(row[i]) for row in cells)]) for i, col in enumerate(columns)]
    excess = 0 if max_width is None else sum(widths) + len(GAP) * (len(columns) - 1) - max_width
    while excess > 0:
        candidates = [i for i, col in enumerate(columns) if col.flexible and widths[i] > col.minimum]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        others = [widths[i] for i in candidates if i != widest]
        cut = min(excess, widths[widest] - columns[widest].minimum, max(1, widths[widest] - max(others, default=0)))
        widths[widest] -= cut
        excess -= cut
    lines = [_row([c.header for c in columns], widths)]
    lines += [_row(row, widths) for row in cells]
    return "\n".join(lines)


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    out = [_fit(cell, w) for cell, w in zip(cells, widths, strict=True)]
    out[-1] = out[-1].rstrip()
    return GAP.join(out).rstrip()


def _fit(text: str, limit: int) -> str:
    if len(text) > limit:
        text = text[: max(0, limit - 1)] + ELLIPSIS
    return text.ljust(limit)


def _one_line(value: object) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def dump(value: Any, fmt: str, *, stream: TextIO | None = None) -> None:
    """Print ``value`` as JSON (indented) or YAML."""
    stream = stream or sys.stdout
    if fmt == "yaml":
        import yaml

        stream.write(yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False))
    else:
        stream.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    stream.flush()


def line(value: Any, fmt: str, *, stream: TextIO | None = None) -> None:
    """Print one streamed item: a JSON line, or a YAML document."""
    stream = stream or sys.stdout
    if fmt == "yaml":
        import yaml

        stream.write("---\n" + yaml.safe_dump(value, sort_keys=False, allow_unicode=True))
    else:
        stream.write(json.dumps(value, separators=(",", ":"), ensure_ascii=False) + "\n")
    stream.flush()


# -- readings of objects ----------------------------------------------------------------------------


def short_name(obj: Mapping[str, Any]) -> str:
    """``name``, or the first characters of the id when the name is the id (the hub's default)."""
    rid = str(obj.get("id") or "")
    name = str(obj.get("name") or (obj.get("metadata") or {}).get("name") or rid)
    return rid[:SHORT_ID] if name == rid and rid else name


def age(timestamp: str | None, *, now: datetime | None = None) -> str:
    """``12s``, ``5m``, ``3h``, ``2d`` since an RFC 3339 timestamp, as kubectl prints it."""
    if not timestamp:
        return "-"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "?"
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    if seconds < 0:
        return "0s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def labels(value: Mapping[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((value or {}).items())) or "-"


def manifest_ref(manifest: Mapping[str, Any]) -> str:
    """``Deployment default/nginx`` (or ``Namespace prod`` for cluster-scoped objects)."""
    meta = manifest.get("metadata") or {}
    name = meta.get("name") or meta.get("generateName") or "?"
    where = f"{meta['namespace']}/{name}" if meta.get("namespace") else str(name)
    return f"{manifest.get('kind') or '?'} {where}"


def condition(conditions: Iterable[Mapping[str, Any]] | None, kind: str) -> Mapping[str, Any] | None:
    for item in conditions or ():
        if item.get("type") == kind:
            return item
    return None


def condition_summary(conditions: Iterable[Mapping[str, Any]] | None, *, messages: bool = True) -> str:
    """``Applied=True Available=True``; a condition that is not True carries its message in parentheses."""
    parts = []
    for item in conditions or ():
        text = f"{item.get('type')}={item.get('status')}"
        if messages and item.get("status") != "True" and item.get("message"):
            text += f" ({_one_line(item['message'])})"
        parts.append(text)
    return " ".join(parts) or "no conditions"
