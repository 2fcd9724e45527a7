"""Status to the hub: one ``status.update_request`` per change of a work's status hash, none otherwise.

The reporter keeps, per work, the latest status and the hash last published. A publish that fails (the broker
is away) leaves the work pending; the loop sends it once the link is back. A deleted work's final ``Deleted``
status is kept until it is sent. Status resync requests from the hub are answered from the same table.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from agent import metrics
from agent import status as st
from agent.link import AgentLink
from protocol import payloads, statushash, types
from protocol.errors import BrokerError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Report:
    resource_id: str
    version: int
    source: str
    metadata: str
    status: payloads.ManifestBundleStatus
    hash: str
    final: bool = False
    """The ``Deleted`` status: sent once, then the work is forgotten."""


class Reporter:
    def __init__(self, link: AgentLink) -> None:
        self.link = link
        self.reports: dict[str, Report] = {}
        self.published: dict[str, str] = {}
        self._pending: dict[str, None] = {}
        self._wake = asyncio.Event()

    def update(self, aw: Mapping[str, Any]) -> None:
        """Take an AppliedWork's current status; publish it if its hash is not the last one published."""
        status = aw.get("status") or {}
        spec = aw.get("spec") or {}
        if "observedVersion" not in status or spec.get("deleteRequested"):
            return
        bundle = st.bundle_status(status)
        name = aw["metadata"]["name"]
        report = Report(
            resource_id=name,
            version=int(status["observedVersion"]),
            source=str(spec.get("source", "")),
            metadata=str(spec.get("workMetadata") or ""),
            status=bundle,
            hash=statushash.status_hash(bundle),
        )
        self._put(report)

    def deleted(self, *, resource_id: str, version: int, source: str, metadata: str, consumer: str) -> None:
        bundle = st.deleted_status(version, consumer)
        self._put(
            Report(
                resource_id=resource_id,
                version=version,
                source=source,
                metadata=metadata,
                status=bundle,
                hash=statushash.status_hash(bundle),
                final=True,
            )
        )

    def republish(self, resource_id: str) -> None:
        """Send the current status again (the hub re-sent a spec it has no status for)."""
        if resource_id in self.reports:
            self.published.pop(resource_id, None)
            self._pending[resource_id] = None
            self._wake.set()

    def _put(self, report: Report) -> None:
        current = self.reports.get(report.resource_id)
        if current is not None and current.final and not report.final:
            return
        self.reports[report.resource_id] = report
        if self.published.get(report.resource_id) != report.hash or report.final:
            self._pending[report.resource_id] = None
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        """Publish pending reports, in order, for as long as the agent runs."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                name = next(iter(self._pending))
                report = self.reports.get(name)
                if report is None:
                    self._pending.pop(name, None)
                    continue
                try:
                    await self._send(report, types.UPDATE_REQUEST)
                except BrokerError as exc:
                    logger.warning("status of %s not sent (will retry): %s", name, exc)
                    await asyncio.sleep(1.0)
                    continue
                if self.reports.get(name) is report:
                    self._pending.pop(name, None)
                    if report.final:
                        logger.info("work %s: Deleted reported to the hub", name)
                        self.reports.pop(name, None)
                        self.published.pop(name, None)

    async def resync(self, source: str, hashes: dict[str, str]) -> None:
        """Answer a ``status.resync_request``: every work of ``source`` whose hash the hub has wrong (all of them
        if the hub listed none); works the hub did not list are not its business."""
        for report in list(self.reports.values()):
            if report.source != source or report.final:
                continue
            if not hashes or (report.resource_id in hashes and hashes[report.resource_id] != report.hash):
                await self._send(report, types.RESYNC_RESPONSE)

    async def _send(self, report: Report, action: str) -> None:
        await self.link.publish_status(
            resource_id=report.resource_id,
            version=report.version,
            source=report.source,
            status=report.status,
            metadata=report.metadata or None,
            action=action,
            status_hash=report.hash,
        )
        self.published[report.resource_id] = report.hash
        metrics.STATUS_PUBLISHED.labels(action).inc()

    def forget(self, resource_id: str) -> None:
        report = self.reports.get(resource_id)
        if report is not None and not report.final:
            self.reports.pop(resource_id, None)
            self.published.pop(resource_id, None)
            self._pending.pop(resource_id, None)
