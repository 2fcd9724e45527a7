"""Kubernetes Events about AppliedWorks (``kubectl describe aw`` shows them).

Events of the cluster-scoped AppliedWork must live in the ``default`` namespace (the apiserver requires an
Event's namespace to match its object's, and cluster-scoped objects take ``default``). The same reason and message are
not posted twice in a row for one work, so a manifest that keeps failing does not flood the namespace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from agent import works
from agent.kube import Kube, KubeError
from agent.status import now

logger = logging.getLogger(__name__)

COMPONENT = "maestro-agent"


class Recorder:
    def __init__(self, kube: Kube, *, instance: str, namespace: str = "default") -> None:
        self.kube = kube
        self.namespace = namespace
        self.instance = instance
        self._last: dict[tuple[str, str], str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def event(self, aw: Mapping[str, Any], type: str, reason: str, message: str, *, once: bool = False) -> None:
        """Post an Event in the background; with ``once``, skip it if it repeats the last one of its reason."""
        name, uid = aw["metadata"]["name"], aw["metadata"].get("uid", "")
        key = (name, reason)
        if once and self._last.get(key) == message:
            return
        self._last[key] = message
        task = asyncio.create_task(self._post(name, uid, type, reason, message), name=f"event:{name}:{reason}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, name: str) -> None:
        for key in [k for k in self._last if k[0] == name]:
            del self._last[key]

    async def close(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _post(self, name: str, uid: str, type: str, reason: str, message: str) -> None:
        when = now()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": self.namespace},
            "involvedObject": {"apiVersion": works.API_VERSION, "kind": works.KIND, "name": name, "uid": uid},
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance,
            "firstTimestamp": when,
            "lastTimestamp": when,
            "count": 1,
        }
        try:
            await self.kube.request("POST", f"/api/v1/namespaces/{self.namespace}/events", body=body)
        except KubeError as exc:
            logger.warning("could not post event %s for %s: %s", reason, name, exc.message)
