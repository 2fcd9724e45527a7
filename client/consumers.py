"""``maestro consumer list|get|create|update|delete``: the clusters the hub delivers to.

A consumer is named by its name (what agents and topics use) or its id. ``update`` changes labels only (the
hub's ``PATCH`` replaces them, so the CLI merges: ``--label env=prod`` sets one, ``--label env-`` removes one).
``delete`` is refused by the hub while any resource still targets the consumer; its reason says so.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

from client import objects, render
from client.errors import CLIError
from client.objects import CONSUMER
from client.rest import Rest

_COLUMNS: Final = [
    render.Column("NAME"),
    render.Column("ID"),
    render.Column("LABELS", flexible=True),
    render.Column("AGE"),
]


def parse_labels(items: Sequence[str]) -> tuple[dict[str, str], set[str]]:
    """``k=v`` to set and ``k-`` to remove, as ``kubectl label`` takes them."""
    put: dict[str, str] = {}
    drop: set[str] = set()
    for item in items:
        if "=" in item:
            key, _, value = item.partition("=")
            if not key:
                raise CLIError(f"--label {item!r}: the key is empty")
            put[key] = value
        elif item.endswith("-") and len(item) > 1:
            drop.add(item[:-1])
        else:
            raise CLIError(f"--label {item!r}: expected KEY=VALUE, or KEY- to remove it")
    return put, drop


def _print(items: list[Mapping[str, Any]]) -> None:
    rows = [
        [str(c.get("name")), str(c.get("id")), render.labels(c.get("labels")), render.age(c.get("created_at"))]
        for c in items
    ]
    print(render.table(_COLUMNS, rows, max_width=render.width()))


def list_(rest: Rest, args: argparse.Namespace) -> int:
    body = rest.get(CONSUMER.path, {"page": args.page, "size": args.size, "search": args.search})
    if args.output != "table":
        render.dump(body, args.output)
    elif not body.get("items"):
        print("No consumers found.", file=sys.stderr)
    else:
        _print(body["items"])
    return 0


def get(rest: Rest, args: argparse.Namespace) -> int:
    return _show(objects.find(rest, CONSUMER, args.ref), args.output)


def create(rest: Rest, args: argparse.Namespace) -> int:
    put, drop = parse_labels(args.label)
    if drop:
        raise CLIError("--label KEY- removes a label, and a new consumer has none")
    body: dict[str, Any] = {"name": args.name}
    if put:
        body["labels"] = put
    created = rest.post(CONSUMER.path, body)
    return _show(created, args.output, action="created")


def update(rest: Rest, args: argparse.Namespace) -> int:
    put, drop = parse_labels(args.label)
    if not put and not drop:
        raise CLIError("nothing to update: give --label KEY=VALUE or --label KEY-")
    current = objects.find(rest, CONSUMER, args.ref)
    labels = {k: v for k, v in (current.get("labels") or {}).items() if k not in drop}
    labels.update(put)
    updated = rest.patch(f"{CONSUMER.path}/{current['id']}", {"labels": labels})
    return _show(updated, args.output, action="configured")


def delete(rest: Rest, args: argparse.Namespace) -> int:
    current = objects.find(rest, CONSUMER, args.ref)
    rest.delete(f"{CONSUMER.path}/{current['id']}")
    print(f"{CONSUMER.noun}/{current.get('name')} deleted")
    return 0


def _show(obj: Mapping[str, Any], fmt: str, *, action: str | None = None) -> int:
    if fmt != "table":
        render.dump(obj, fmt)
    elif action:
        print(f"{CONSUMER.noun}/{obj.get('name')} {action} (id {obj.get('id')})")
    else:
        _print([obj])
    return 0
