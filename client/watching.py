"""``status --watch``: the hub's status stream (``GET /resource-bundles?watch=true``), resumed by cursor.

The stream is opened first (the hub fixes its starting point before it answers), then the current status is
read and printed (``"type": "Current"`` lines in ``-o json``), then every status change as it comes, so nothing
falls between the two. Each streamed line carries a ``cursor``; when the stream breaks (a hub restart, a
network cut, 45 s of silence where the hub sends a keepalive every 15 s), the watch reconnects with backoff and
asks for what came after the last cursor it saw: nothing is missed and nothing printed twice, without a relist.
Only a watch that broke before its first event has no cursor; it reads the current status again instead.

The stream carries bundles (a single resource is a bundle of one manifest to the hub), and so does every line
printed, the current status included: ``resource status --watch`` keeps the single resources' events,
``resourcebundle status --watch`` the others (as the hub's bundle list does). The hub filters by consumer; by
name and by type is done here.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Mapping
from typing import Any, Final

from client import objects, render, works
from client.errors import APIError, UnreachableError
from client.objects import BUNDLE, RESOURCE, Kind
from client.rest import Rest

IDLE_TIMEOUT: Final = 45.0
"""Seconds without a byte before the stream counts as broken (the hub sends a keepalive every 15 s)."""
BACKOFF_MIN: Final = 0.2
BACKOFF_MAX: Final = 5.0


class _Selection:
    """Which streamed objects the watch prints (one target, every bundle, or every single resource), and their
    names: the stream's objects carry none, so they are learnt from the first listing or asked for once."""

    def __init__(self, rest: Rest, kind: Kind, target: Mapping[str, Any] | None) -> None:
        self.rest = rest
        self.kind = kind
        self.target = str(target["id"]) if target else None
        self.singles: dict[str, bool] = {}
        self.names: dict[str, str] = {str(target["id"]): render.short_name(target)} if target else {}

    def name(self, obj: Mapping[str, Any]) -> str:
        rid = str(obj.get("id"))
        if rid not in self.names:
            try:
                self.names[rid] = render.short_name(self.rest.get(f"{BUNDLE.path}/{rid}"))
            except APIError as exc:
                if exc.status != 404:
                    raise
                self.names[rid] = render.short_name(obj)
        return self.names[rid]

    def wants(self, obj: Mapping[str, Any]) -> bool:
        rid = str(obj.get("id"))
        if self.target is not None:
            return rid == self.target
        if rid not in self.singles:
            try:
                self.rest.get(f"{RESOURCE.path}/{rid}")
                self.singles[rid] = True
            except APIError as exc:
                if exc.status != 404:
                    raise
                self.singles[rid] = False  # NB: a bundle (or a resource gone before we first saw it).
        return self.singles[rid] == (self.kind is RESOURCE)


def watch(rest: Rest, kind: Kind, args: argparse.Namespace) -> int:
    target = objects.find(rest, kind, args.ref) if args.ref else None
    consumer = target["consumer_name"] if target else args.consumer
    selection = _Selection(rest, kind, target)
    params: dict[str, object] = {"watch": "true", "consumer_name": consumer}
    cursor: str | None = None
    attempt = 0
    answered_once = False
    while True:
        if cursor is not None:
            params["cursor"] = cursor
        current_shown = cursor is not None
        stream = rest.lines(BUNDLE.path, params, idle=IDLE_TIMEOUT)
        try:
            for raw in stream:
                answered_once = True
                if not current_shown:
                    _print_current(rest, kind, args, target, selection)
                    current_shown = True
                if not raw.strip():
                    continue  # NB: the stream's start, or the hub's keepalive.
                attempt = 0
                event = json.loads(raw)
                cursor = str(event.get("cursor") or "") or cursor
                obj = event.get("object") or {}
                if selection.wants(obj):
                    _print_event(event, args.output, selection=selection)
            reason = "the hub ended the stream"
        except UnreachableError as exc:
            if not answered_once:
                raise
            reason = exc.message
        except APIError as exc:
            if exc.status < 500:
                raise
            reason = exc.message
        finally:
            stream.close()
        attempt += 1
        delay = min(BACKOFF_MAX, BACKOFF_MIN * 2 ** min(attempt - 1, 10)) * (0.5 + random.random() / 2)
        resume = f"resuming after cursor {cursor}" if cursor else "reading the current status again"
        print(f"maestro: watch interrupted ({reason}); {resume} in {delay:.1f}s", file=sys.stderr, flush=True)
        time.sleep(delay)


def _print_current(
    rest: Rest, kind: Kind, args: argparse.Namespace, target: Mapping[str, Any] | None, selection: _Selection
) -> None:
    """Print what is watched as it is now, in the stream's shape (a bundle, single resources included)."""
    if target is not None:
        items = [rest.get(f"{BUNDLE.path}/{target['id']}")]
    else:
        search = f"consumer_name = {objects.quote(args.consumer)}" if args.consumer else None
        if kind is BUNDLE:
            items = list(rest.pages(BUNDLE.path, {"search": search}))
        else:  # NB: each in the stream's (bundle) shape, which the hub serves by id only.
            found = rest.pages(kind.path, {"search": search, "fields": "id"})
            items = [rest.get(f"{BUNDLE.path}/{o['id']}") for o in found]
        selection.singles.update({str(o["id"]): kind is RESOURCE for o in items})
    selection.names.update({str(o["id"]): render.short_name(o) for o in items})
    for obj in items:
        _print_event({"type": "Current", "cursor": None, "object": obj}, args.output, selection=selection)


def _print_event(event: Mapping[str, Any], fmt: str, *, selection: _Selection) -> None:
    if fmt != "table":
        render.line(event, fmt)
        return
    obj = event.get("object") or {}
    if event.get("type") == "StatusDelete":
        summary = "Deleted"
    else:
        conditions = objects.current_conditions(BUNDLE, obj)
        detail = "no status for this version yet" if conditions is None else render.condition_summary(conditions)
        summary = f"{works.state(BUNDLE, obj)}: {detail}"
    fields = [f"{event.get('type', '?'):<12}", selection.name(obj), str(obj.get("consumer_name", "-"))]
    print("  ".join([*fields, f"v{obj.get('version', '?')}", summary]), flush=True)
