"""Applying one manifest with its update strategy, and the checks that decide whether a write is needed.

Strategies (upstream's ``updateStrategy.type``):

* ``ServerSideApply`` — an apply patch with the field manager (``maestro-agent`` unless the config names one)
  and ``force`` as configured; a field-manager conflict is reported, not retried blindly.
* ``Update`` — create if absent, else replace the fields the manifest sets (labels and annotations merged).
* ``CreateOnly`` — create if absent, never touch an existing object.
* ``ReadOnly`` — never write: only read the object, for existence and feedback.

No write is sent when the live object already holds everything the manifest says (and our owner reference), so
an agent restart or a repeated spec re-applies nothing and leaves ``resourceVersion`` alone.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any, Final

from agent import works
from agent.kube import APPLY_PATCH, Kind, Kube, KubeError

DEFAULT_FIELD_MANAGER: Final = "maestro-agent"


@dataclasses.dataclass(frozen=True)
class Result:
    """What applying one manifest did."""

    live: dict[str, Any] | None
    """The object as it is after the step (``None``: it does not exist)."""
    wrote: bool = False
    error: KubeError | None = None


def marker(obj: Mapping[str, Any] | None) -> str:
    """What changes when someone changes the object's intent: its generation, else its resourceVersion."""
    meta = (obj or {}).get("metadata") or {}
    if meta.get("generation"):
        return f"g:{meta['generation']}"
    return f"rv:{meta.get('resourceVersion', '')}"


def desired(manifest: Mapping[str, Any], kind: Kind, *, owner: Mapping[str, Any], work: str) -> dict[str, Any]:
    """The manifest as the agent writes it: owner reference and work label added, namespace only if namespaced."""
    body = copy.deepcopy(dict(manifest))
    meta = dict(body.get("metadata") or {})
    if not kind.namespaced:
        meta.pop("namespace", None)
    meta["labels"] = {**(meta.get("labels") or {}), works.WORK_LABEL: work}
    refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != owner["uid"]]
    meta["ownerReferences"] = [*refs, dict(owner)]
    body["metadata"] = meta
    body.pop("status", None)
    return body


def holds(want: Any, live: Any) -> bool:
    """Whether ``live`` already holds everything in ``want`` (maps: every key; lists: same length, item-wise)."""
    if isinstance(want, Mapping):
        if not isinstance(live, Mapping):
            return False
        return all(k in live and holds(v, live[k]) for k, v in want.items() if k != "ownerReferences") and (
            "ownerReferences" not in want or _refs_held(want["ownerReferences"], live.get("ownerReferences"))
        )
    if isinstance(want, list):
        return (
            isinstance(live, list)
            and len(want) == len(live)
            and all(holds(a, b) for a, b in zip(want, live, strict=True))
        )
    if isinstance(want, bool) or isinstance(live, bool):
        return want is live
    if isinstance(want, int | float) and isinstance(live, int | float):
        return float(want) == float(live)
    return bool(want == live)


def _refs_held(want: Any, live: Any) -> bool:
    uids = {r.get("uid") for r in live or [] if isinstance(r, Mapping)}
    return all(isinstance(r, Mapping) and r.get("uid") in uids for r in want or [])


async def apply(
    kube: Kube,
    kind: Kind,
    manifest: Mapping[str, Any],
    *,
    strategy: Mapping[str, Any],
    owner: Mapping[str, Any],
    work: str,
    live: dict[str, Any] | None,
    reclaim: bool = False,
) -> Result:
    """Apply ``manifest`` as ``strategy`` says, given the live object (read by the caller, ``None`` if absent).

    Nothing is written when the live object already holds the manifest and our owner reference. ``reclaim``
    (drift: someone changed fields this very manifest had set) takes them back even without ``force``.
    """
    meta = manifest.get("metadata") or {}
    name, namespace = str(meta.get("name", "")), str(meta.get("namespace") or "") or None
    kind_of = str(strategy.get("type") or works.DEFAULT_STRATEGY)
    if kind_of == "ReadOnly":
        return Result(live=live)
    body = desired(manifest, kind, owner=owner, work=work)
    if live is not None and (kind_of == "CreateOnly" or holds(body, live)):
        return Result(live=live)
    try:
        if kind_of == "ServerSideApply":
            ssa = strategy.get("serverSideApply") or {}
            result = await kube.request(
                "PATCH",
                kind.path(namespace, name),
                body=body,
                content_type=APPLY_PATCH,
                query={
                    "fieldManager": ssa.get("fieldManager") or DEFAULT_FIELD_MANAGER,
                    "force": reclaim or bool(ssa.get("force", False)),
                },
            )
        elif live is None:
            result = await kube.request("POST", kind.path(namespace), body=body)
        else:
            result = await kube.request("PUT", kind.path(namespace, name), body=_merged(live, body))
    except KubeError as exc:
        return Result(live=live, error=exc)
    return Result(live=result, wrote=True)


def _merged(live: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    """``Update``: the live object with the manifest's top-level fields; labels, annotations, owners merged."""
    merged = copy.deepcopy(dict(live))
    for key, value in body.items():
        if key != "metadata":
            merged[key] = copy.deepcopy(value)
    meta = dict(merged.get("metadata") or {})
    want = body.get("metadata") or {}
    for key in ("labels", "annotations"):
        if want.get(key):
            meta[key] = {**(meta.get(key) or {}), **want[key]}
    uids = {r.get("uid") for r in meta.get("ownerReferences") or []}
    meta["ownerReferences"] = [
        *(meta.get("ownerReferences") or []),
        *(r for r in want.get("ownerReferences") or [] if r.get("uid") not in uids),
    ]
    merged["metadata"] = meta
    return merged


def owned_by(obj: Mapping[str, Any] | None, uid: str) -> bool:
    return any(r.get("uid") == uid for r in ((obj or {}).get("metadata") or {}).get("ownerReferences") or [])


async def orphan(kube: Kube, kind: Kind, obj: Mapping[str, Any], *, uid: str) -> None:
    """Remove our owner reference and work label from ``obj`` (the object stays)."""
    meta = obj.get("metadata") or {}
    refs = meta.get("ownerReferences") or []
    ops: list[dict[str, Any]] = []
    for index in reversed(range(len(refs))):
        if refs[index].get("uid") == uid:
            ops += [
                {"op": "test", "path": f"/metadata/ownerReferences/{index}/uid", "value": uid},
                {"op": "remove", "path": f"/metadata/ownerReferences/{index}"},
            ]
    if works.WORK_LABEL in (meta.get("labels") or {}):
        ops.append({"op": "remove", "path": "/metadata/labels/" + works.WORK_LABEL.replace("/", "~1")})
    if not ops:
        return
    await kube.request(
        "PATCH",
        kind.path(meta.get("namespace"), meta.get("name")),
        body=ops,
        content_type="application/json-patch+json",
    )


async def delete(kube: Kube, kind: Kind, obj: Mapping[str, Any]) -> None:
    """Delete ``obj`` (this very object: uid precondition) with foreground propagation; gone is fine."""
    meta = obj.get("metadata") or {}
    try:
        await kube.request(
            "DELETE",
            kind.path(meta.get("namespace"), meta.get("name")),
            body={
                "kind": "DeleteOptions",
                "apiVersion": "v1",
                "propagationPolicy": "Foreground",
                "preconditions": {"uid": meta.get("uid")},
            },
        )
    except KubeError as exc:
        if not (exc.not_found or exc.conflict):  # NB: 409 = the uid precondition failed: another object now.
            raise
