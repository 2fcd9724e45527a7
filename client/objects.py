"""The REST collections the CLI works on, how a person names their objects, and how to read their status.

A reference on the command line (``maestro resourcebundle get REF``) is, in this order: a full id, a name, or
the unique prefix of an id (at least 4 characters, as the tables show 8). Consumers are named by name or id.
The hub lists bundles only under ``resource-bundles`` but reads a single resource there by id too, so a bundle
reference also finds a single resource (in its bundle shape), as it did when the bundle list held both.

A bundle's status is ``status.conditions`` with ``status.ObservedVersion`` (upstream's keys); a single
resource's is ``status.ReconcileStatus.Conditions`` with ``ObservedVersion`` (the seed README's shape).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from client.errors import APIError, CLIError
from client.rest import Rest

_UUID: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ID_PREFIX: Final = re.compile(r"^[0-9a-f][0-9a-f-]{3,35}$")


@dataclasses.dataclass(frozen=True)
class Kind:
    """One collection: ``noun`` as the CLI says it, ``path`` under ``/api/maestro/v1``."""

    noun: str
    path: str
    prefixes: bool = True
    """Whether a reference may be an id prefix (consumers are named by name)."""
    also: str | None = None
    """Another collection whose objects this one reads by id (names and prefixes are searched in both)."""

    def ref(self, obj: Mapping[str, Any]) -> str:
        """``resourcebundle/nginx`` (or the short id when the name is the id), for messages."""
        from client import render

        return f"{self.noun}/{render.short_name(obj)}"


CONSUMER: Final = Kind("consumer", "consumers", prefixes=False)
BUNDLE: Final = Kind("resourcebundle", "resource-bundles", also="resources")
RESOURCE: Final = Kind("resource", "resources")


def quote(value: str) -> str:
    """A ``search`` string literal (``''`` escapes a quote)."""
    return "'" + value.replace("'", "''") + "'"


def search(*clauses: str | None) -> str | None:
    """``a and b`` of the clauses given (each parenthesised), or ``None`` for none."""
    given = [c for c in clauses if c]
    if not given:
        return None
    return given[0] if len(given) == 1 else " and ".join(f"({c})" for c in given)


def find(rest: Rest, kind: Kind, ref: str) -> dict[str, Any]:
    """The object ``ref`` names, or a :class:`CLIError` saying it does not exist (or is ambiguous)."""
    if _UUID.match(ref):
        try:
            found: dict[str, Any] = rest.get(f"{kind.path}/{ref}")
            return found
        except APIError as exc:
            if exc.status != 404:
                raise
    named = _search(rest, kind, f"name = {quote(ref)}")
    if named:
        return named[0]
    if kind.prefixes and _ID_PREFIX.match(ref):
        items = _search(rest, kind, f"id like {quote(ref + '%')}")
        if len(items) == 1:
            return items[0]
        if len(items) > 1:
            raise CLIError(f"{kind.noun} {ref!r} is ambiguous: more than one id starts with it")
    raise CLIError(f"{kind.noun} {ref!r} not found")


def _search(rest: Rest, kind: Kind, search: str) -> list[dict[str, Any]]:
    """Up to two objects matching ``search`` in ``kind``'s collection and then in its ``also`` (read by id)."""
    found: list[dict[str, Any]] = list(rest.get(kind.path, {"search": search, "size": 2}).get("items") or [])
    if kind.also and len(found) < 2:
        others = rest.get(kind.also, {"search": search, "size": 2 - len(found), "fields": "id"}).get("items") or []
        found += [rest.get(f"{kind.path}/{o['id']}") for o in others]
    return found


def conditions(kind: Kind, obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    status = obj.get("status") or {}
    if kind is RESOURCE:
        return list((status.get("ReconcileStatus") or {}).get("Conditions") or [])
    return list(status.get("conditions") or [])


def observed_version(kind: Kind, obj: Mapping[str, Any]) -> int | None:
    status = obj.get("status") or {}
    value = (status.get("ReconcileStatus") or {}).get("ObservedVersion") if kind is RESOURCE else None
    if value is None:
        value = status.get("ObservedVersion")
    return value if isinstance(value, int) else None


def current_conditions(kind: Kind, obj: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The conditions if the agent reported the object's current version, else ``None`` (pending)."""
    observed = observed_version(kind, obj)
    if observed is None or observed < int(obj.get("version") or 0):
        return None
    return conditions(kind, obj)


def condition_cells(kind: Kind, obj: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    """The status of each condition in ``names`` for a table: ``Pending`` until the current version is reported,
    ``Deleting`` (first cell) once the delete has started."""
    if obj.get("deleted_at"):
        return ["Deleting", *("-" for _ in names[1:])]
    current = current_conditions(kind, obj)
    if current is None:
        return ["Pending" for _ in names]
    cells = []
    for name in names:
        found = next((c for c in current if c.get("type") == name), None)
        cells.append(str(found.get("status")) if found else "-")
    return cells
