"""``apply -f FILE``: create what is not on the hub yet, update what is, over REST.

A bundle is found by its name (names are unique on the hub) and replaced with ``PUT`` carrying the version just
read, so a concurrent change is a conflict (the hub's 409 reason is printed), never lost. A single resource is
found by what it deploys (consumer, apiVersion, kind, namespace and name of its manifest; or its ``name`` if
the document gives one) and patched with ``PATCH`` and that version. An apply that changes nothing leaves the
version alone and says ``unchanged``.

``--wait`` then waits for each one in turn, under one deadline for all (:mod:`client.waiting`).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from client import documents, objects, render, waiting
from client.errors import CLIError
from client.objects import BUNDLE, RESOURCE, Kind
from client.rest import Rest


def apply_bundles(rest: Rest, args: argparse.Namespace) -> int:
    docs = documents.load(args.file)
    bundles = documents.bundles(docs, consumer=args.consumer, name=args.name, where=args.file)
    results = [_apply_bundle(rest, bundle, quiet=args.output != "table") for bundle in bundles]
    return _finish(rest, BUNDLE, results, args)


def apply_resources(rest: Rest, args: argparse.Namespace) -> int:
    docs = documents.load(args.file)
    resources = documents.resources(docs, consumer=args.consumer, where=args.file)
    results = [_apply_resource(rest, resource, quiet=args.output != "table") for resource in resources]
    return _finish(rest, RESOURCE, results, args)


def _apply_bundle(rest: Rest, bundle: documents.Bundle, *, quiet: bool) -> dict[str, Any]:
    assert bundle.name is not None
    assert bundle.consumer is not None
    body: dict[str, Any] = {
        "name": bundle.name,
        "consumer_name": bundle.consumer,
        "manifests": bundle.manifests,
        "manifest_configs": bundle.manifest_configs,
    }
    if bundle.delete_option is not None:
        body["delete_option"] = bundle.delete_option
    if bundle.metadata:
        body["metadata"] = bundle.metadata
    found = rest.get(BUNDLE.path, {"search": f"name = {objects.quote(bundle.name)}", "size": 1}).get("items") or []
    if not found:
        created = rest.post(BUNDLE.path, {"id": str(uuid.uuid4()), **body}, idempotent=True)
        return _report(BUNDLE, created, "created", quiet=quiet)
    current = found[0]
    _check_target(BUNDLE, current, bundle.consumer)
    updated = rest.put(f"{BUNDLE.path}/{current['id']}", {**body, "version": current["version"]})
    return _report(
        BUNDLE, updated, "configured" if updated["version"] != current["version"] else "unchanged", quiet=quiet
    )


def _apply_resource(rest: Rest, resource: documents.Resource, *, quiet: bool) -> dict[str, Any]:
    assert resource.consumer is not None
    changes: dict[str, Any] = {"manifest": resource.manifest}
    if resource.update_strategy is not None:
        changes["update_strategy"] = resource.update_strategy
    if resource.delete_option is not None:
        changes["delete_option"] = resource.delete_option
    search: str | None
    if resource.name:
        search = f"name = {objects.quote(resource.name)}"
    else:
        holds = json.dumps({"manifests": [documents.identity(resource.manifest)]}, separators=(",", ":"))
        search = objects.search(
            f"consumer_name = {objects.quote(resource.consumer)}", f"payload->'data' @> {objects.quote(holds)}"
        )
    found = rest.get(RESOURCE.path, {"search": search, "size": 2}).get("items") or []
    if len(found) > 1:
        raise CLIError(
            f"{len(found)} resources of consumer {resource.consumer!r} deploy "
            f"{render.manifest_ref(resource.manifest)}: name the one to update with name: in the file"
        )
    if not found:
        # NB: the id is ours, so a create resent after a dropped connection cannot make a second resource.
        body = {"id": str(uuid.uuid4()), "consumer_name": resource.consumer, **changes}
        if resource.name:
            body["name"] = resource.name
        return _report(RESOURCE, rest.post(RESOURCE.path, body, idempotent=True), "created", quiet=quiet)
    current = found[0]
    _check_target(RESOURCE, current, resource.consumer)
    updated = rest.patch(f"{RESOURCE.path}/{current['id']}", {**changes, "version": current["version"]})
    action = "configured" if updated["version"] != current["version"] else "unchanged"
    return _report(RESOURCE, updated, action, quiet=quiet)


def _check_target(kind: Kind, current: Mapping[str, Any], consumer: str) -> None:
    if current.get("consumer_name") != consumer:
        raise CLIError(f"{kind.ref(current)} belongs to consumer {current.get('consumer_name')!r}, not {consumer!r}")
    if current.get("deleted_at"):
        raise CLIError(f"{kind.ref(current)} is being deleted: apply again once it is gone")


def _report(kind: Kind, obj: dict[str, Any], action: str, *, quiet: bool) -> dict[str, Any]:
    if not quiet:
        what = f" ({render.manifest_ref(obj.get('manifest') or {})})" if kind is RESOURCE else ""
        print(f"{kind.ref(obj)}{what} {action} (version {obj.get('version')})", flush=True)
    return obj


def _finish(rest: Rest, kind: Kind, results: list[dict[str, Any]], args: argparse.Namespace) -> int:
    if args.wait:
        deadline = time.monotonic() + args.timeout
        done = []
        for obj in results:
            final = waiting.until_applied(rest, kind, obj, deadline=deadline, timeout=args.timeout)
            if args.output == "table":
                conditions = objects.current_conditions(kind, final)
                print(f"{kind.ref(final)} version {final.get('version')}: {render.condition_summary(conditions)}")
            done.append(final)
        results = done
    if args.output != "table":
        render.dump(results[0] if len(results) == 1 else {"kind": "List", "items": results}, args.output)
    return 0
