"""``list``, ``get``, ``delete`` and ``status`` for resource bundles and single resources (the same verbs on two
collections of the same rows; ``consumer`` has its own module).

The one-word ``STATUS`` of a table row reads the agent's conditions for the row's current version:
``Available`` (Applied and Available), ``Applied`` (not yet Available), ``Failed`` (Applied=False), ``Pending``
(nothing reported for this version yet), ``Deleting`` (the delete waits for the agent). ``status`` shows the
conditions themselves, per manifest, with their messages.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Mapping
from typing import Any, Final

from client import objects, render, waiting
from client.objects import BUNDLE, RESOURCE, Kind
from client.rest import Rest

_COLUMNS: Final = {
    "resourcebundle": [
        render.Column("NAME"),
        render.Column("CONSUMER", flexible=True),
        render.Column("VERSION"),
        render.Column("STATUS"),
        render.Column("AGE"),
    ],
    "resource": [
        render.Column("NAME"),
        render.Column("CONSUMER", flexible=True),
        render.Column("OBJECT", flexible=True, minimum=12),
        render.Column("VERSION"),
        render.Column("STATUS"),
        render.Column("AGE"),
    ],
}


def state(kind: Kind, obj: Mapping[str, Any]) -> str:
    """The one-word status of a table row (see the module docstring)."""
    if obj.get("deleted_at"):
        return "Deleting"
    current = objects.current_conditions(kind, obj)
    if current is None:
        return "Pending"
    found = {c.get("type"): c.get("status") for c in current}
    if found.get("Applied") == "False":
        return "Failed"
    if found.get("Applied") != "True":
        return "Unknown"
    return "Available" if found.get("Available") == "True" else "Applied"


def row(kind: Kind, obj: Mapping[str, Any]) -> list[str]:
    cells = [render.short_name(obj), str(obj.get("consumer_name") or "-")]
    if kind is RESOURCE:
        cells.append(render.manifest_ref(obj.get("manifest") or {}))
    cells += [str(obj.get("version") or "-"), state(kind, obj), render.age(obj.get("created_at"))]
    return cells


def print_table(kind: Kind, items: list[Mapping[str, Any]]) -> None:
    print(render.table(_COLUMNS[kind.noun], [row(kind, o) for o in items], max_width=render.width()))


def list_(rest: Rest, kind: Kind, args: argparse.Namespace) -> int:
    consumer = f"consumer_name = {objects.quote(args.consumer)}" if args.consumer else None
    params = {"page": args.page, "size": args.size, "search": objects.search(consumer, args.search)}
    body = rest.get(kind.path, params)
    if args.output != "table":
        render.dump(body, args.output)
        return 0
    items = body.get("items") or []
    if not items:
        print(f"No {kind.noun}s found.", file=sys.stderr)
        return 0
    print_table(kind, items)
    total, page, size = int(body.get("total") or 0), int(body.get("page") or 1), len(items)
    shown_to = (page - 1) * args.size + size
    if total > shown_to:
        print(f"({size} of {total} shown; --page {page + 1} for more, or --size)", file=sys.stderr)
    return 0


def get(rest: Rest, kind: Kind, args: argparse.Namespace) -> int:
    obj = objects.find(rest, kind, args.ref)
    if args.output != "table":
        render.dump(obj, args.output)
    else:
        print_table(kind, [obj])
    return 0


def delete(rest: Rest, kind: Kind, args: argparse.Namespace) -> int:
    obj = objects.find(rest, kind, args.ref)
    rest.delete(f"{kind.path}/{obj['id']}")
    if args.wait:
        waiting.until_deleted(rest, kind, obj, timeout=args.timeout)
        print(f"{kind.ref(obj)} deleted")
    else:
        print(f"{kind.ref(obj)} deleting (the agent removes its manifests, then the hub forgets it)")
    return 0


def status(rest: Rest, kind: Kind, args: argparse.Namespace) -> int:
    if args.watch:
        from client import watching

        return watching.watch(rest, kind, args)
    obj = objects.find(rest, kind, args.ref)
    if args.output != "table":
        render.dump(status_view(obj), args.output)
    else:
        print(describe(kind, obj))
    return 0


def status_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What ``status -o json`` prints: who, which version, and the status as the hub stores it."""
    keys = ("id", "name", "consumer_name", "version", "deleted_at", "status")
    return {k: obj[k] for k in keys if k in obj}


def describe(kind: Kind, obj: Mapping[str, Any]) -> str:
    """The status as a person reads it: one line per condition, messages wrapped to 80 columns."""
    observed = objects.observed_version(kind, obj)
    lines = [
        f"Name:      {obj.get('name')}",
        f"ID:        {obj.get('id')}",
        f"Consumer:  {obj.get('consumer_name')}",
        f"Version:   {obj.get('version')}"
        + (f" (the agent reports version {observed})" if observed is not None else " (no status from the agent yet)"),
        f"Status:    {state(kind, obj)}",
    ]
    if obj.get("deleted_at"):
        lines.append(f"Deleting:  since {obj['deleted_at']}")
    conditions = objects.conditions(kind, obj)
    if conditions:
        lines.append("Conditions:")
        lines += _conditions(conditions, indent="  ")
    if kind is BUNDLE:
        for item in (obj.get("status") or {}).get("resourceStatus") or []:
            meta = item.get("resourceMeta") or {}
            lines.append(f"Manifest {meta.get('ordinal', '?')}: {render.manifest_ref(_as_manifest(meta))}")
            lines += _conditions(item.get("conditions") or [], indent="  ")
            values = ((item.get("statusFeedback") or {}).get("values")) or []
            if values:
                lines += _wrap("Feedback: " + ", ".join(_feedback(v) for v in values), indent="  ")
    elif (content := ((obj.get("status") or {}).get("ContentStatus"))) is not None:
        import json

        lines += _wrap("Object status: " + json.dumps(content, sort_keys=True), indent="")
    return "\n".join(lines)


def _conditions(conditions: list[dict[str, Any]], *, indent: str) -> list[str]:
    out = []
    for c in conditions:
        text = f"{c.get('type')}={c.get('status')}"
        if c.get("reason"):
            text += f" {c['reason']}"
        if c.get("message"):
            text += f": {c['message']}"
        out += _wrap(text, indent=indent)
    return out


def _wrap(text: str, *, indent: str) -> list[str]:
    return textwrap.wrap(
        " ".join(text.split()), width=render.DEFAULT_WIDTH, initial_indent=indent, subsequent_indent=indent + "    "
    ) or [indent]


def _as_manifest(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": meta.get("kind"), "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")}}


def _feedback(value: Mapping[str, Any]) -> str:
    field = value.get("fieldValue") or {}
    kind = str(field.get("type") or "")
    raw = field.get(kind[:1].lower() + kind[1:]) if kind else None
    return f"{value.get('name')}={raw}"
