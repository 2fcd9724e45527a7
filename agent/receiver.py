"""Spec events from the hub → AppliedWorks (and their payload Secrets) on the cluster.

The receiver is the :class:`agent.link.Handler` of the Kubernetes agent:

* a create/update/resync spec of a newer version writes the AppliedWork (server-side apply of its spec, named
  by the resource id) and then its payload Secret, owned by it; the kopf handlers take it from there;
* a repeat of the version it holds re-sends the current status (the hub asks again when it lost one);
* a delete marks the AppliedWork as deleted by the hub and deletes it: the finaliser removes the manifests as the
  delete option says, then the reporter sends ``Deleted``. A delete for a work it does not hold is answered with
  ``Deleted`` at once;
* the spec resync lists every AppliedWork held, with version 0 for one whose manifests are lost (its Secret
  deleted by hand), so the hub sends it again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from agent import metrics, works
from agent.kube import APPLY_PATCH, Kube, KubeError
from agent.link import SpecEvent
from agent.reconcile import Engine
from agent.reporter import Reporter
from agent.status import now

logger = logging.getLogger(__name__)

FIELD_MANAGER = "maestro-agent"


class Receiver:
    def __init__(
        self,
        kube: Kube,
        *,
        consumer: str,
        namespace: str,
        hub: str,
        engine: Engine,
        reporter: Reporter,
        store: dict[str, dict[str, Any]],
    ) -> None:
        self.kube = kube
        self.consumer = consumer
        self.namespace = namespace
        self.hub = hub
        self.engine = engine
        self.reporter = reporter
        self.store = store
        """AppliedWorks by name, as kopf last saw them (kept by the operator's event handler)."""
        self.lost: set[str] = set()
        """Works whose payload is gone: resynced with version 0."""

    # --- link.Handler
    # ---------------------------------------------------------------------------------------------

    def held(self) -> Iterable[tuple[str, int]]:
        for name, aw in list(self.store.items()):
            yield name, 0 if name in self.lost else int((aw.get("spec") or {}).get("resourceVersion") or 0)

    async def on_spec(self, spec: SpecEvent) -> None:
        metrics.SPEC_RECEIVED.labels("delete" if spec.deleting else spec.action).inc()
        if spec.deleting:
            await self.delete(spec)
            return
        aw = self.store.get(spec.resource_id)
        if aw is not None and spec.resource_id not in self.lost:
            held = int(aw["spec"].get("resourceVersion") or 0)
            if aw["spec"].get("deleteRequested") or aw["metadata"].get("deletionTimestamp"):
                return
            if spec.version and spec.version < held:
                logger.info("work %s: dropped stale version %d (holding %d)", spec.resource_id, spec.version, held)
                return
            if spec.version == held and aw["spec"].get("payload", {}).get("hash") == works.bundle_hash(spec.bundle):
                if aw["spec"].get("hub") != self.hub:
                    await self.write(spec.resource_id, self._spec(spec))  # NB: a new hub adopts the work.
                self.reporter.republish(spec.resource_id)
                return
        logger.info("work %s: version %d received from %s", spec.resource_id, spec.version, spec.source)
        await self.write(spec.resource_id, self._spec(spec), bundle=spec.bundle)

    async def on_status_resync(self, source: str, hashes: dict[str, str]) -> None:
        await self.reporter.resync(source, hashes)

    # --- writes
    # ----------------------------------------------------------------------------------------------

    def _spec(self, spec: SpecEvent) -> dict[str, Any]:
        return works.spec_for(
            resource_id=spec.resource_id,
            consumer=self.consumer,
            source=spec.source,
            hub=self.hub,
            version=spec.version,
            metadata=spec.metadata,
            bundle=spec.bundle,
            namespace=self.namespace,
        )

    async def write(self, name: str, spec: Mapping[str, Any], *, bundle: Mapping[str, Any] | None = None) -> None:
        """Server-side apply the AppliedWork, then (with ``bundle``) its payload Secret owned by it."""
        if bundle is not None:
            self.engine.payloads[name] = (works.bundle_hash(bundle), dict(bundle))
        self.engine.latest[name] = int(spec.get("resourceVersion") or 0)
        body = {"apiVersion": works.API_VERSION, "kind": works.KIND, "metadata": {"name": name}, "spec": dict(spec)}
        aw = await self.kube.request(
            "PATCH",
            works.APPLIED_WORK.path(name=name),
            body=body,
            content_type=APPLY_PATCH,
            query={"fieldManager": FIELD_MANAGER, "force": True},
        )
        self.store[name] = aw
        if bundle is not None:
            secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": works.PAYLOAD_TYPE,
                "metadata": {
                    "name": works.secret_name(name),
                    "namespace": self.namespace,
                    "labels": {works.PAYLOAD_LABEL: name},
                    "ownerReferences": [works.owner_reference(name, aw["metadata"]["uid"])],
                },
                "data": {works.PAYLOAD_KEY: works.encode_payload(bundle)},
            }
            await self.kube.request(
                "PATCH",
                works.SECRET.path(self.namespace, works.secret_name(name)),
                body=secret,
                content_type=APPLY_PATCH,
                query={"fieldManager": FIELD_MANAGER, "force": True},
            )
            self.lost.discard(name)

    async def delete(self, spec: SpecEvent) -> None:
        aw = self.store.get(spec.resource_id)
        if aw is None:
            aw = await self.kube.get(works.APPLIED_WORK, spec.resource_id)
        if aw is None:
            self.reporter.deleted(
                resource_id=spec.resource_id,
                version=spec.version,
                source=spec.source,
                metadata=spec.metadata,
                consumer=self.consumer,
            )
            return
        await self.request_delete(spec.resource_id, aw)

    async def request_delete(self, name: str, aw: Mapping[str, Any]) -> None:
        """Mark the work as deleted by the hub (or evicted) and delete it; the finaliser does the rest."""
        logger.info("work %s: delete requested", name)
        self.engine.saved.pop(name, None)
        self.engine.deleting.add(name)
        if not aw["spec"].get("deleteRequested"):
            try:
                self.store[name] = await self.kube.request(
                    "PATCH",
                    works.APPLIED_WORK.path(name=name),
                    body={"spec": {"deleteRequested": now()}},
                    content_type="application/merge-patch+json",
                )
            except KubeError as exc:
                if not exc.not_found:
                    raise
        try:
            await self.kube.request("DELETE", works.APPLIED_WORK.path(name=name))
        except KubeError as exc:
            if not exc.not_found:
                raise
