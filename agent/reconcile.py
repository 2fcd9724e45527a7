"""Reconciling one AppliedWork: apply its manifests, prune what the hub dropped, write its status; and finalising
one that is being deleted.

Each work is reconciled by one caller at a time (a lock per name). A reconcile is cheap when nothing changed: live
objects come from the watcher's cache when it has them, a manifest whose hash, object uid and generation (or
resourceVersion) are those recorded after the last apply is not applied again, and the status is only written
when it differs. A change to an applied object that the agent did not make is drift: it is corrected (unless the
strategy is ``CreateOnly`` or ``ReadOnly``) and reported.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from agent import apply, feedback, metrics, ranks, works
from agent import status as st
from agent.kube import Kind, Kube, KubeError
from agent.recorder import Recorder
from agent.watcher import Watcher

logger = logging.getLogger(__name__)

CRD_WAIT: Final = 10.0  # seconds to wait inline for a CRD of the same work to be Established


class PayloadMissing(Exception):
    """The work's manifests are neither in memory nor in its Secret: the hub must send them again."""


@dataclasses.dataclass
class Outcome:
    done: bool
    """Everything applied (or, for a finalise, everything gone); ``False`` asks for a retry."""
    message: str = ""


@dataclasses.dataclass
class Saved:
    """A work deleted by hand while the hub still wants it: what is needed to create it again."""

    spec: dict[str, Any]
    bundle: dict[str, Any]


class Engine:
    def __init__(
        self,
        kube: Kube,
        *,
        consumer: str,
        namespace: str,
        max_json_raw_length: int,
        recorder: Recorder,
        watcher: Watcher,
        on_status: Callable[[Mapping[str, Any]], Awaitable[None]],
    ) -> None:
        self.kube = kube
        self.consumer = consumer
        self.namespace = namespace
        self.max_json_raw_length = max_json_raw_length
        self.recorder = recorder
        self.watcher = watcher
        self.on_status = on_status
        """Called with the AppliedWork (its status updated) after every reconcile: the reporter."""
        self.payloads: dict[str, tuple[str, dict[str, Any]]] = {}
        """Bundles by work name and hash, as the receiver wrote them (saves reading the Secret back)."""
        self.latest: dict[str, int] = {}
        """The newest version the receiver wrote per work: an apply of an older one stops early."""
        self.saved: dict[str, Saved] = {}
        self.deleting: set[str] = set()
        """Works being deleted: no reconcile applies anything to them any more (a stale copy may still ask)."""
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def forget(self, name: str) -> Saved | None:
        """Drop what is kept for a work whose AppliedWork is gone; returns what to create it again from, if it was
        deleted by hand."""
        for per_work in (self.payloads, self.latest, self._locks):
            per_work.pop(name, None)
        self.deleting.discard(name)
        return self.saved.pop(name, None)

    # --- payload
    # ----------------------------------------------------------------------------------------------

    async def bundle(self, aw: Mapping[str, Any]) -> dict[str, Any]:
        name = aw["metadata"]["name"]
        payload = aw["spec"].get("payload") or {}
        cached = self.payloads.get(name)
        if cached is not None and cached[0] == payload.get("hash"):
            return cached[1]
        secret = await self.kube.get(works.SECRET, payload.get("secretName", ""), payload.get("secretNamespace"))
        if secret is None:
            raise PayloadMissing(
                f"the payload Secret {payload.get('secretNamespace')}/{payload.get('secretName')} is missing"
            )
        try:
            bundle = works.decode_payload(secret)
        except ValueError as exc:
            raise PayloadMissing(str(exc)) from None
        if works.bundle_hash(bundle) != payload.get("hash"):
            raise PayloadMissing("the payload Secret does not hold the bundle of this version (yet)")
        self.payloads[name] = (payload["hash"], bundle)
        return bundle

    # --- apply
    # ------------------------------------------------------------------------------------------------

    async def reconcile(self, aw: dict[str, Any], *, why: str = "") -> Outcome:
        async with self.lock(aw["metadata"]["name"]):
            return await self._reconcile(aw, why=why)

    async def _reconcile(self, aw: dict[str, Any], *, why: str) -> Outcome:
        name, uid = aw["metadata"]["name"], aw["metadata"]["uid"]
        spec = aw["spec"]
        if spec.get("deleteRequested") or aw["metadata"].get("deletionTimestamp") or name in self.deleting:
            return Outcome(done=True)
        version = int(spec.get("resourceVersion") or 0)
        old = dict(aw.get("status") or {})
        when = st.now()
        try:
            bundle = await self.bundle(aw)
        except PayloadMissing as exc:
            new = dict(old)
            new["conditions"] = [
                st.condition(
                    old.get("conditions") or [],
                    "Applied",
                    "False",
                    "PayloadMissing",
                    str(exc),
                    generation=version,
                    when=when,
                )
            ]
            await self._write_status(aw, old, new)
            raise
        manifests: list[Any] = list(bundle.get("manifests") or [])
        configs: list[Any] = list(bundle.get("manifestConfigs") or [])
        owner = works.owner_reference(name, uid)
        before = {_key(e): e for e in old.get("manifests") or []}
        entries: list[dict[str, Any] | None] = [None] * len(manifests)
        wrote = False
        for ordinal in ranks.apply_order([m if isinstance(m, dict) else {} for m in manifests]):
            if self.latest.get(name, version) > version or name in self.deleting:
                logger.info("work %s: version %d superseded or deleted; stopping this apply", name, version)
                return Outcome(done=True, message="superseded")
            entry, changed = await self._one(
                aw,
                ordinal,
                manifests[ordinal],
                configs,
                manifests,
                owner=owner,
                before=before,
                when=when,
                version=version,
            )
            entries[ordinal] = entry
            wrote = wrote or changed
        current = [e for e in entries if e is not None]
        pruning = await self._prune(aw, before, current)
        new = self._status(old, current, pruning, version=version, when=when, wrote=wrote)
        applied_ok = st.is_true(new["conditions"], "Applied")
        if wrote:
            if applied_ok:
                self.recorder.event(aw, "Normal", "Applied", f"Applied version {version} ({new['summary']} manifests)")
            metrics.APPLIED.inc()
        message = ""
        if not applied_ok:
            failed = [e for e in current if not st.is_true(e.get("conditions"), "Applied")]
            message = "; ".join(_message(st.find(e.get("conditions"), "Applied")) for e in failed[:3])
            self.recorder.event(aw, "Warning", "ApplyFailed", message, once=True)
        # NB: INFO for a new version, a write or a changed outcome; a re-check that changed nothing is DEBUG.
        before_applied = st.find(old.get("conditions"), "Applied") or {}
        changed = (
            wrote
            or before_applied.get("observedGeneration") != version
            or applied_ok != (before_applied.get("status") == "True")
        )
        logger.log(
            logging.INFO if changed else logging.DEBUG,
            "work %s: version %d, %d manifests: %s",
            name,
            version,
            len(manifests),
            "applied" if applied_ok else f"failed: {message}",
        )
        await self._write_status(aw, old, new)
        return Outcome(done=applied_ok and not pruning, message="" if applied_ok else "some manifests failed")

    async def _one(
        self,
        aw: Mapping[str, Any],
        ordinal: int,
        manifest: Any,
        configs: list[Any],
        manifests: list[Any],
        *,
        owner: Mapping[str, Any],
        before: Mapping[tuple[str, str, str, str], Mapping[str, Any]],
        when: str,
        version: int,
    ) -> tuple[dict[str, Any], bool]:
        ident = works.identity(manifest)
        entry: dict[str, Any] = {
            "ordinal": ordinal,
            **{k: ident[k] for k in ("group", "version", "kind", "namespace", "name")},
        }
        prev = before.get(_key(entry))
        old_conditions = list((prev or {}).get("conditions") or [])

        def conditions(
            applied: tuple[str, str, str], live: Mapping[str, Any] | None, fb: feedback.Feedback | None
        ) -> list[dict[str, Any]]:
            out = [st.condition(old_conditions, "Applied", *applied, generation=version, when=when)]
            if live is not None:
                available = ("True", "ResourceAvailable", "Resource is available")
            elif entry.get("resource"):
                available = ("False", "ResourceNotAvailable", "Resource is not available")
            else:
                available = ("Unknown", "IncompleteResourceMeta", "Resource meta is incomplete")
            out.append(st.condition(old_conditions, "Available", *available, generation=version, when=when))
            if fb is not None and fb.synced is not None:
                out.append(
                    st.condition(old_conditions, "StatusFeedbackSynced", *fb.synced, generation=version, when=when)
                )
            elif (kept := st.find(old_conditions, "StatusFeedbackSynced")) is not None:
                out.append(dict(kept))
            return out

        problem = _malformed(manifest)
        if problem is not None:
            entry["conditions"] = conditions(("False", "AppliedManifestFailed", problem), None, None)
            return entry, False
        try:
            kind = await self._kind(manifest, manifests)
        except KubeError as exc:
            entry["conditions"] = conditions(("False", "AppliedManifestFailed", exc.message), None, None)
            return entry, False
        config = works.config_for(manifest, configs, resource=kind.resource)
        strategy = dict(config.get("updateStrategy") or {"type": works.DEFAULT_STRATEGY})
        entry["resource"] = kind.resource
        if not kind.namespaced:
            entry["namespace"] = ""
        elif not entry["namespace"]:
            message = f"{kind.kind} {entry['name']} is namespaced but the manifest has no metadata.namespace"
            entry["conditions"] = conditions(("False", "AppliedManifestFailed", message), None, None)
            return entry, False
        digest = works.manifest_hash(manifest, config)
        try:
            if prev is None and strategy.get("type", works.DEFAULT_STRATEGY) == "ServerSideApply":
                live = None  # NB: a new manifest under server-side apply is applied whatever exists: no read first.
            else:
                live = await self.watcher.get(kind, entry["name"], entry["namespace"] or None)
        except KubeError as exc:
            entry["conditions"] = conditions(("False", "AppliedManifestFailed", exc.message), None, None)
            return entry, False
        unchanged = (
            prev is not None
            and live is not None
            and prev.get("hash") == digest
            and prev.get("uid") == live["metadata"].get("uid")
            and prev.get("observed") == apply.marker(live)
            and apply.owned_by(live, owner["uid"]) == bool(prev.get("written"))
        )
        wrote = False
        if unchanged:
            result = apply.Result(live=live)
        else:
            drifted = (
                prev is not None
                and live is not None
                and prev.get("hash") == digest
                and prev.get("uid") == live["metadata"].get("uid")
                and bool(prev.get("written"))
            )
            result = await apply.apply(
                kube=self.kube,
                kind=kind,
                manifest=manifest,
                strategy=strategy,
                owner=owner,
                work=aw["metadata"]["name"],
                live=live,
                reclaim=drifted,
            )
            wrote = result.wrote
            drift = wrote and drifted
            if drift:
                metrics.DRIFT.inc()
                self.recorder.event(
                    aw,
                    "Normal",
                    "DriftCorrected",
                    f"{kind.kind} {_where(entry)} was changed on the cluster; re-applied",
                )
                logger.info("work %s: drift of %s %s corrected", aw["metadata"]["name"], kind.kind, _where(entry))
        live = result.live
        if result.error is not None:
            entry["conditions"] = conditions(("False", "AppliedManifestFailed", result.error.message), live, None)
            if live is not None:
                entry["uid"] = live["metadata"].get("uid", "")
            return entry, False
        if wrote and live is not None:
            self.watcher.remember(kind, live)
        fb = feedback.evaluate(
            live,
            _rules(config),
            group=kind.group,
            kind=kind.kind,
            max_json_raw_length=self.max_json_raw_length,
        )
        applied = ("True", "AppliedManifestComplete", "Apply manifest complete")
        entry["conditions"] = conditions(applied, live, fb)
        entry["feedback"] = list(fb.values) if fb.synced is not None else list((prev or {}).get("feedback") or [])
        entry["hash"] = digest
        if live is not None:
            entry["uid"] = live["metadata"].get("uid", "")
            entry["observed"] = apply.marker(live)
            entry["written"] = apply.owned_by(live, owner["uid"])
        return entry, wrote

    async def _kind(self, manifest: Mapping[str, Any], manifests: list[Any]) -> Kind:
        """Resolve the manifest's kind; if a CRD of this very work defines it, wait for it to be Established."""
        api_version, kind_name = str(manifest["apiVersion"]), str(manifest["kind"])
        try:
            return await self.kube.kind(api_version, kind_name)
        except KubeError as exc:
            if exc.code != 404 or not _defined_here(api_version, kind_name, manifests):
                raise
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CRD_WAIT
        while True:
            await asyncio.sleep(0.5)
            try:
                return await self.kube.kind(api_version, kind_name)
            except KubeError as exc:
                if exc.code != 404 or loop.time() > deadline:
                    raise KubeError(
                        404, "NoKindMatch", f"{exc.message} (its CRD in this work is not Established yet)"
                    ) from None

    async def _prune(
        self,
        aw: Mapping[str, Any],
        before: Mapping[tuple[str, str, str, str], Mapping[str, Any]],
        current: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Delete what an earlier version applied and this one no longer has; return those still going."""
        keep = {_key(e) for e in current}
        uid = aw["metadata"]["uid"]
        going: list[dict[str, Any]] = []
        rules = _orphaning_rules(aw["spec"].get("deleteOption") or {})
        for key, prev in before.items():
            if key in keep or not prev.get("written") or not prev.get("resource"):
                continue
            kind = Kind(
                group=prev["group"],
                version=prev["version"],
                kind=prev["kind"],
                resource=prev["resource"],
                namespaced=bool(prev.get("namespace")),
            )
            live = await self.kube.get(kind, prev["name"], prev.get("namespace") or None)
            if live is None or live["metadata"].get("uid") != prev.get("uid") or not apply.owned_by(live, uid):
                continue
            if _orphaned(prev, rules):
                await apply.orphan(self.kube, kind, live, uid=uid)
                continue
            await apply.delete(self.kube, kind, live)
            self.recorder.event(
                aw, "Normal", "Deleted", f"{kind.kind} {_where(prev)} was dropped from the work and deleted"
            )
            going.append(dict(prev))
        return going

    def _status(
        self,
        old: Mapping[str, Any],
        current: list[dict[str, Any]],
        pruning: list[dict[str, Any]],
        *,
        version: int,
        when: str,
        wrote: bool,
    ) -> dict[str, Any]:
        total = len(current)
        applied = sum(st.is_true(e.get("conditions"), "Applied") for e in current)
        conds = list(old.get("conditions") or [])
        work_applied = ("True", "AppliedManifestWorkComplete", "Apply manifest work complete")
        if applied < total:
            work_applied = ("False", "AppliedManifestWorkFailed", "Failed to apply manifest work")
        states = [(st.find(e.get("conditions"), "Available") or {}).get("status", "Unknown") for e in current]
        if "False" in states:
            n = states.count("False")
            work_available = ("False", "ResourcesNotAvailable", f"{n} of {total} resources are not available")
        elif "Unknown" in states:
            n = states.count("Unknown")
            work_available = ("Unknown", "ResourcesStatusUnknown", f"{n} of {total} resources have unknown status")
        else:
            work_available = ("True", "ResourcesAvailable", "All resources are available")
        applied_resources = [
            {k: e.get(k, "") for k in ("group", "version", "resource", "namespace", "name", "uid")}
            for e in [*current, *pruning]
            if e.get("written")
        ]
        new: dict[str, Any] = {
            **{k: v for k, v in old.items() if k == "kopf"},
            "observedVersion": version,
            "lastAppliedTime": when if wrote or "lastAppliedTime" not in old else old["lastAppliedTime"],
            "summary": f"{applied}/{total}",
            "conditions": [
                st.condition(conds, "Applied", *work_applied, generation=version, when=when),
                st.condition(conds, "Available", *work_available, generation=version, when=when),
            ],
            "appliedResources": applied_resources,
            "manifests": current,
        }
        return new

    async def _write_status(
        self, aw: dict[str, Any], old: Mapping[str, Any], new: dict[str, Any], *, publish: bool = True
    ) -> None:
        if _comparable(old) != _comparable(new):
            name = aw["metadata"]["name"]
            patch = {k: v for k, v in new.items() if k != "kopf"}
            try:
                result = await self.kube.request(
                    "PATCH",
                    works.APPLIED_WORK.path(name=name, subresource="status"),
                    body={"status": patch},
                    content_type="application/merge-patch+json",
                )
            except KubeError as exc:
                if exc.not_found:
                    return
                raise
            aw["status"] = result.get("status") or new
            aw["metadata"] = result.get("metadata") or aw["metadata"]
        else:
            aw["status"] = new
        if publish:
            await self.on_status(aw)

    # --- delete
    # -----------------------------------------------------------------------------------------------

    async def finalize(self, aw: dict[str, Any]) -> Outcome:
        """Clean up for a deleted AppliedWork; ``done`` once nothing the delete option removes is left."""
        self.deleting.add(aw["metadata"]["name"])
        async with self.lock(aw["metadata"]["name"]):
            return await self._finalize(aw)

    async def _finalize(self, aw: dict[str, Any]) -> Outcome:
        name, uid = aw["metadata"]["name"], aw["metadata"]["uid"]
        spec = aw["spec"]
        by_hub = bool(spec.get("deleteRequested"))
        option = spec.get("deleteOption") or {}
        policy = option.get("propagationPolicy") or "Foreground"
        rules = _orphaning_rules(option)
        old = dict(aw.get("status") or {})
        entries = _written(old)
        if not by_hub and name not in self.saved:
            try:
                self.saved[name] = Saved(spec=dict(spec), bundle=await self.bundle(aw))
            except PayloadMissing:
                logger.warning(
                    "work %s was deleted by hand and its payload is gone: the hub's resync brings it back", name
                )
        left = 0
        for entry in reversed(entries):
            kind = Kind(
                group=entry.get("group", ""),
                version=entry["version"],
                kind=entry.get("kind", ""),
                resource=entry["resource"],
                namespaced=bool(entry.get("namespace")),
            )
            live = await self.kube.get(kind, entry["name"], entry.get("namespace") or None)
            if live is None or live["metadata"].get("uid") != entry.get("uid") or not apply.owned_by(live, uid):
                continue
            if not by_hub or policy == "Orphan" or (policy == "SelectivelyOrphan" and _orphaned(entry, rules)):
                await apply.orphan(self.kube, kind, live, uid=uid)
                continue
            if not live["metadata"].get("deletionTimestamp"):
                await apply.delete(self.kube, kind, live)
            left += 1
        if left:
            if not st.is_true(old.get("conditions"), "Deleting"):
                deleting = st.condition(
                    old.get("conditions") or [],
                    "Deleting",
                    "True",
                    "WorkDeleting",
                    "ManifestWork is being deleted",
                    generation=int(spec.get("resourceVersion") or 0),
                    when=st.now(),
                )
                new = {
                    **old,
                    "conditions": [*(c for c in old.get("conditions") or [] if c.get("type") != "Deleting"), deleting],
                }
                await self._write_status(aw, old, new, publish=False)
            return Outcome(done=False, message=f"waiting for {left} objects to be deleted")
        if by_hub:
            self.recorder.event(aw, "Normal", "Deleted", f"Work deleted ({policy})")
            logger.info("work %s: deleted (%s)", name, policy)
        else:
            logger.info("work %s: AppliedWork deleted by hand; its objects are kept and it is created again", name)
        return Outcome(done=True)


def _key(entry: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (
        str(entry.get("group", "")),
        str(entry.get("kind", "") or entry.get("resource", "")),
        str(entry.get("namespace", "")),
        str(entry.get("name", "")),
    )


def _where(entry: Mapping[str, Any]) -> str:
    return f"{entry['namespace']}/{entry['name']}" if entry.get("namespace") else str(entry.get("name", ""))


def _message(condition: Mapping[str, Any] | None) -> str:
    return str((condition or {}).get("message", ""))


def _malformed(manifest: Any) -> str | None:
    if not isinstance(manifest, dict):
        return f"the manifest is not a Kubernetes object (a JSON object), got {type(manifest).__name__}"
    for field in ("apiVersion", "kind"):
        if not isinstance(manifest.get(field), str) or not manifest[field]:
            return f"the manifest has no {field}"
    meta = manifest.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        return "the manifest has no metadata.name"
    return None


def _rules(config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rules = config.get("feedbackRules")
    return [r for r in rules if isinstance(r, Mapping)] if isinstance(rules, list) else []


def _defined_here(api_version: str, kind: str, manifests: list[Any]) -> bool:
    group, _, version = api_version.rpartition("/")
    for m in manifests:
        if not isinstance(m, dict) or m.get("kind") != "CustomResourceDefinition":
            continue
        spec = m.get("spec") or {}
        if spec.get("group") == group and (spec.get("names") or {}).get("kind") == kind:
            return any(v.get("name") == version for v in spec.get("versions") or [] if isinstance(v, dict))
    return False


def _orphaning_rules(option: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rules = (option.get("selectivelyOrphans") or {}).get("orphaningRules") or []
    return [r for r in rules if isinstance(r, Mapping)]


def _orphaned(entry: Mapping[str, Any], rules: list[Mapping[str, Any]]) -> bool:
    return any(
        str(r.get("group", "")) == entry.get("group", "")
        and str(r.get("resource", "")) == entry.get("resource", "")
        and str(r.get("name", "")) == entry.get("name", "")
        and str(r.get("namespace", "")) == entry.get("namespace", "")
        for r in rules
    )


def _comparable(status: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k != "kopf"}


def _written(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every object the work wrote (current manifests and ones still being pruned), once each."""
    out: dict[str, Mapping[str, Any]] = {}
    for entry in [*(status.get("manifests") or []), *(status.get("appliedResources") or [])]:
        if entry.get("uid") and entry.get("resource") and entry.get("written", True):
            out.setdefault(str(entry["uid"]), entry)
    return list(out.values())
