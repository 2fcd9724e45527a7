"""``--wait``: poll the hub until the agent reports what the command asked for, or the deadline passes.

Applied: the agent's status is for the version we wrote (or a later one) and says ``Applied=True`` and
``Available=True``. A condition that is False is not final (the agent retries: a CRD may not be established yet),
so it is reported when the deadline passes, with its reason and message. Deleted: the object is gone (the agent
confirmed ``Deleted=True`` and the hub removed the row).

Polling over the hub's REST API rides out a hub restart: a refused connection is retried until the deadline.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from typing import Any, Final

from client import objects
from client.errors import APIError, UnreachableError, WaitError
from client.objects import Kind
from client.rest import Rest

WANTED: Final = ("Applied", "Available")
_INTERVALS: Final = (0.2, 0.3, 0.5, 0.5, 1.0)


def until_applied(
    rest: Rest, kind: Kind, obj: Mapping[str, Any], *, timeout: float, deadline: float | None = None
) -> dict[str, Any]:
    """The object once its current version is Applied and Available; :class:`WaitError` otherwise.

    ``deadline`` (``time.monotonic()``) defaults to ``timeout`` from now; several waits may share one.
    """
    version = int(obj.get("version") or 0)
    path = f"{kind.path}/{obj['id']}"
    deadline = deadline if deadline is not None else time.monotonic() + timeout
    latest: dict[str, Any] = dict(obj)
    unreachable: UnreachableError | None = None
    for attempt in itertools.count():
        try:
            latest = rest.get(path, timeout=_remaining(deadline))
            unreachable = None
        except UnreachableError as exc:
            unreachable = exc
        except APIError as exc:
            if exc.status == 404:
                raise WaitError(f"{kind.ref(obj)} was deleted while waiting for it to be applied") from None
            raise
        if unreachable is None:
            if latest.get("deleted_at"):
                raise WaitError(f"{kind.ref(latest)} is being deleted")
            current = objects.current_conditions(kind, latest)
            if current is not None and _satisfied(current):
                return latest
        if time.monotonic() >= deadline:
            break
        time.sleep(min(_INTERVALS[min(attempt, len(_INTERVALS) - 1)], _remaining(deadline)))
    raise WaitError(
        f"timed out after {timeout:g}s waiting for {kind.ref(obj)} version {version}: "
        + _why(kind, latest, unreachable)
    )


def until_deleted(rest: Rest, kind: Kind, obj: Mapping[str, Any], *, timeout: float) -> None:
    """Return once the object is gone; :class:`WaitError` at the deadline."""
    path = f"{kind.path}/{obj['id']}"
    deadline = time.monotonic() + timeout
    for attempt in itertools.count():
        try:
            rest.get(path, timeout=_remaining(deadline))
        except APIError as exc:
            if exc.status == 404:
                return
            raise
        except UnreachableError:
            pass
        if time.monotonic() >= deadline:
            break
        time.sleep(min(_INTERVALS[min(attempt, len(_INTERVALS) - 1)], _remaining(deadline)))
    raise WaitError(
        f"timed out after {timeout:g}s waiting for {kind.ref(obj)} to be deleted: the agent has not confirmed that "
        "its manifests are gone"
    )


def _satisfied(conditions: list[dict[str, Any]]) -> bool:
    found = {c.get("type"): c.get("status") for c in conditions}
    return all(found.get(name) == "True" for name in WANTED)


def _why(kind: Kind, obj: Mapping[str, Any], unreachable: UnreachableError | None) -> str:
    if unreachable is not None:
        return unreachable.message
    version = int(obj.get("version") or 0)
    observed = objects.observed_version(kind, obj)
    if observed is None:
        return f"no status from the agent of consumer {obj.get('consumer_name')!r} yet (is it running?)"
    if observed < version:
        return f"the agent still reports version {observed}"
    conditions = objects.conditions(kind, obj)
    for name in WANTED:
        found = next((c for c in conditions if c.get("type") == name), None)
        if found is None:
            return f"the agent reports no {name} condition"
        if found.get("status") != "True":
            reason = f" ({found['reason']})" if found.get("reason") else ""
            message = f": {found['message']}" if found.get("message") else ""
            return f"{name}={found.get('status')}{reason}{message}" + _manifest_why(obj, name)
    return "the conditions are not all True"  # pragma: no cover - _satisfied would have returned


def _manifest_why(obj: Mapping[str, Any], name: str) -> str:
    """For a bundle, the first manifest whose ``name`` condition is not True, with its own message (the work's
    message is a summary; the manifest's is the apiserver's)."""
    for item in (obj.get("status") or {}).get("resourceStatus") or []:
        meta = item.get("resourceMeta") or {}
        for cond in item.get("conditions") or []:
            if cond.get("type") == name and cond.get("status") != "True":
                where = f"{meta.get('namespace')}/{meta.get('name')}" if meta.get("namespace") else meta.get("name")
                return (
                    f"; {meta.get('kind')} {where}: {cond.get('message') or cond.get('reason') or cond.get('status')}"
                )
    return ""


def _remaining(deadline: float) -> float:
    return max(0.05, deadline - time.monotonic())
