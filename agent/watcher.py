"""Watches on the objects the agent wrote, so a status change or a change by someone else is seen at once.

For every kind a work uses, one list+watch over all namespaces selects the objects carrying the agent's work
label; their latest versions are kept in a cache that the reconciler reads instead of the apiserver. Each change
not made by the agent itself calls ``on_change`` with the owning AppliedWork's name. Objects the agent did not
write (``ReadOnly``, an existing object under ``CreateOnly``) are not labelled: the periodic status sync reads
them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from agent import works
from agent.kube import Kind, Kube, KubeError
from protocol.backoff import Backoff

logger = logging.getLogger(__name__)

#: A broken watch is re-listed after 1 s, 2 s, 4 s ... at most 30 s.
RETRY = Backoff(min=1.0, max=30.0)

Key = tuple[str, str, str]  # kind path, namespace, name


class Watcher:
    def __init__(self, kube: Kube, *, on_change: Callable[[str], None], timeout_seconds: int = 300) -> None:
        self.kube = kube
        self.on_change = on_change
        self.timeout_seconds = timeout_seconds
        self._cache: dict[Key, dict[str, Any]] = {}
        self._synced: dict[str, asyncio.Event] = {}
        self._healthy: dict[str, bool] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    async def get(self, kind: Kind, name: str, namespace: str | None) -> dict[str, Any] | None:
        """The live object: from the cache if it is a watched (labelled) one, else from the apiserver."""
        path = kind.path()
        synced = self._watch(kind)
        if synced.is_set():
            cached = self._cache.get((path, namespace or "", name))
            if cached is not None:
                return cached
        return await self.kube.get(kind, name, namespace)

    def remember(self, kind: Kind, obj: dict[str, Any]) -> None:
        """Take the answer of our own write as the cached state (its watch event is then not a change)."""
        meta = obj.get("metadata") or {}
        if works.WORK_LABEL in (meta.get("labels") or {}):
            key = (kind.path(), meta.get("namespace") or "", meta.get("name", ""))
            cached = self._cache.get(key)
            if cached is None or _newer(obj, cached):  # NB: the watch may already hold a later version.
                self._cache[key] = obj

    def watching(self, group: str, version: str, resource: str) -> bool:
        """Whether changes of that kind reach us by watch right now (listed and the watch task alive)."""
        base = f"/apis/{group}/{version}" if group else f"/api/{version}"
        path = f"{base}/{resource}"
        task, synced = self._tasks.get(path), self._synced.get(path)
        return (
            task is not None
            and not task.done()
            and synced is not None
            and synced.is_set()
            and self._healthy.get(path, False)
        )

    async def close(self) -> None:
        self._closed = True
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def _watch(self, kind: Kind) -> asyncio.Event:
        path = kind.path()
        if path not in self._tasks and not self._closed:
            self._synced[path] = asyncio.Event()
            self._tasks[path] = asyncio.create_task(self._run(kind), name=f"watch:{path}")
        return self._synced[path]

    async def _run(self, kind: Kind) -> None:
        path = kind.path()
        failures = 0
        while not self._closed:
            try:
                version = await self._list(kind)
                self._synced[path].set()
                self._healthy[path] = True
                failures = 0
                while True:
                    async for event in self.kube.watch(
                        kind,
                        resource_version=version,
                        label_selector=works.WORK_LABEL,
                        timeout_seconds=self.timeout_seconds,
                    ):
                        version = self._handle(path, event) or version
            except asyncio.CancelledError:
                raise
            except KubeError as exc:
                if exc.not_found:  # NB: the kind is gone (its CRD deleted); a later get() starts a new watch.
                    logger.info("stopped watching %s: the apiserver no longer serves it", path)
                    self.kube.forget(kind.api_version)
                    self._tasks.pop(path, None)
                    self._synced.pop(path, None)
                    for key in [k for k in self._cache if k[0] == path]:
                        del self._cache[key]
                    return
                if exc.code != 410:
                    failures += 1
                    logger.warning("watch of %s failed: %s", path, exc.message)
            except Exception as exc:
                failures += 1
                logger.warning("watch of %s broke: %r", path, exc)
            if failures:
                self._healthy[path] = False
                await asyncio.sleep(RETRY.delay(failures))

    async def _list(self, kind: Kind) -> str:
        path = kind.path()
        listing = await self.kube.request("GET", path, query={"labelSelector": works.WORK_LABEL})
        seen: set[Key] = set()
        for item in listing.get("items") or []:
            key = self._key(path, item)
            seen.add(key)
            before = self._cache.get(key)
            self._cache[key] = item
            if before is not None and _rv(before) != _rv(item):
                self._changed(item)
        for key in [k for k in self._cache if k[0] == path and k not in seen]:
            gone = self._cache.pop(key)
            self._changed(gone)
        return str((listing.get("metadata") or {}).get("resourceVersion", ""))

    def _handle(self, path: str, event: dict[str, Any]) -> str | None:
        obj = event.get("object") or {}
        kind = event.get("type")
        if kind == "BOOKMARK":
            return _rv(obj) or None
        key = self._key(path, obj)
        before = self._cache.get(key)
        if kind == "DELETED":
            self._cache.pop(key, None)
            self._changed(obj)
        elif before is None or _rv(before) != _rv(obj):
            self._cache[key] = obj
            if before is None or _newer(obj, before):
                self._changed(obj)
        return _rv(obj) or None

    def _changed(self, obj: dict[str, Any]) -> None:
        work = ((obj.get("metadata") or {}).get("labels") or {}).get(works.WORK_LABEL)
        if work:
            self.on_change(work)

    @staticmethod
    def _key(path: str, obj: dict[str, Any]) -> Key:
        meta = obj.get("metadata") or {}
        return (path, meta.get("namespace") or "", meta.get("name", ""))


def _rv(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _newer(obj: dict[str, Any], than: dict[str, Any]) -> bool:
    try:
        return int(_rv(obj)) > int(_rv(than))
    except ValueError:  # NB: resourceVersions are opaque; etcd's happen to be integers.
        return True
