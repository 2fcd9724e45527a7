"""A small generic Kubernetes client over kubernetes-asyncio's ``ApiClient``: any kind, by REST path.

The agent applies arbitrary manifests, so typed APIs do not fit, and kubernetes-asyncio's ``DynamicClient``
turns HTTP errors into ``Status`` objects instead of raising. Here every call raises :class:`KubeError` (with the
apiserver's own ``reason`` and ``message``) for a non-2xx answer, kinds are resolved by discovery (cached per
group/version, re-read on a miss so a CRD created a moment ago is found), and requests pass a client-side rate
limit (``--kube-api-qps`` / ``--kube-api-burst``) as client-go does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

JSON: Final = "application/json"
MERGE_PATCH: Final = "application/merge-patch+json"
APPLY_PATCH: Final = "application/apply-patch+yaml"
_RETRIES: Final = 5
_RETRY_CODES: Final = frozenset({429, 500, 503, 504})
_REDISCOVER_AFTER: Final = 1.0  # seconds between re-reads of one group/version on misses


class KubeError(Exception):
    """A failed apiserver call: ``code`` is the HTTP status, ``reason``/``message`` the apiserver's."""

    def __init__(self, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details or {})

    @classmethod
    def from_api(cls, exc: ApiException) -> KubeError:
        body: Any = None
        try:
            body = json.loads(exc.body) if exc.body else None
        except (TypeError, ValueError):
            body = None
        if isinstance(body, dict) and body.get("kind") == "Status":
            return cls(
                int(exc.status or 0), str(body.get("reason", "")), str(body.get("message", "")), body.get("details")
            )
        return cls(int(exc.status or 0), str(exc.reason or ""), str(exc.body or exc.reason or exc))

    @property
    def not_found(self) -> bool:
        return self.code == 404

    @property
    def conflict(self) -> bool:
        return self.code == 409


class UnknownKindError(KubeError):
    """Discovery has no such kind (yet): kubectl's "no matches for kind" case."""

    def __init__(self, api_version: str, kind: str) -> None:
        super().__init__(404, "NoKindMatch", f'no matches for kind "{kind}" in version "{api_version}"')


@dataclasses.dataclass(frozen=True, slots=True)
class Kind:
    """A resolved kind: where its objects live."""

    group: str
    version: str
    kind: str
    resource: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.resource}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
        if subresource:
            base += f"/{subresource}"
        return base


def split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


class _Bucket:
    """A token bucket: ``qps`` tokens per second, at most ``burst`` saved."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps = qps
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        if self.qps <= 0:
            return
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.qps)
            self._stamp = now
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self.qps)
                self._tokens = 1
                self._stamp = time.monotonic()
            self._tokens -= 1


class Kube:
    """One apiserver connection; create with :func:`connect`, close with :meth:`close`."""

    def __init__(self, api: client.ApiClient, *, qps: float = 50.0, burst: int = 100) -> None:
        self.api = api
        self.requests = 0
        """Requests sent (watches included): the benchmark reads it."""
        self.writes = 0
        """Requests with a write verb (POST, PUT, PATCH, DELETE)."""
        self._bucket = _Bucket(qps, burst)
        self._groups: dict[str, dict[str, Kind]] = {}
        self._read_at: dict[str, float] = {}
        self._discovery = asyncio.Lock()

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    async def close(self) -> None:
        await self.api.close()

    # --- discovery
    # -----------------------------------------------------------------------------------------------

    async def kind(self, api_version: str, kind: str) -> Kind:
        """Resolve ``apiVersion``/``kind``; raises :class:`UnknownKindError` if the apiserver does not serve it."""
        found = self._groups.get(api_version, {}).get(kind)
        if found is not None:
            return found
        async with self._discovery:
            found = self._groups.get(api_version, {}).get(kind)
            if found is None and time.monotonic() - self._read_at.get(api_version, -1e9) >= _REDISCOVER_AFTER:
                await self._discover(api_version)
                found = self._groups.get(api_version, {}).get(kind)
        if found is None:
            raise UnknownKindError(api_version, kind)
        return found

    async def _discover(self, api_version: str) -> None:
        group, version = split_api_version(api_version)
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        self._read_at[api_version] = time.monotonic()
        try:
            listing = await self.request("GET", path)
        except KubeError as exc:
            if exc.not_found:
                self._groups[api_version] = {}
                return
            raise
        kinds: dict[str, Kind] = {}
        for entry in listing.get("resources") or []:
            if "/" in entry.get("name", ""):
                continue  # NB: subresources such as deployments/status
            kinds[entry["kind"]] = Kind(
                group=group,
                version=version,
                kind=entry["kind"],
                resource=entry["name"],
                namespaced=bool(entry.get("namespaced")),
            )
        self._groups[api_version] = kinds

    def forget(self, api_version: str) -> None:
        """Drop what discovery knows of ``api_version`` (e.g. after its CRD was deleted)."""
        self._groups.pop(api_version, None)
        self._read_at.pop(api_version, None)

    # --- requests
    # ------------------------------------------------------------------------------------------------

    async def allowed(
        self, verb: str, resource: str, *, group: str = "", namespace: str = "", subresource: str = ""
    ) -> bool:
        """A SelfSubjectAccessReview: whether this client may ``verb`` ``resource`` (:class:`KubeError` when the
        review itself fails)."""
        attributes = {"verb": verb, "group": group, "resource": resource, "subresource": subresource}
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {**attributes, "namespace": namespace}},
        }
        answer = await self.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=review)
        return bool((answer.get("status") or {}).get("allowed"))

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        content_type: str = JSON,
        timeout: float | None = 30.0,
    ) -> dict[str, Any]:
        """One call; the decoded JSON answer, or :class:`KubeError`. Answers that say "try again" (429, 503,
        504: throttled, storage initialising) are retried a few times with a growing delay."""
        for attempt in range(_RETRIES + 1):
            try:
                return await self._request(
                    method, path, body=body, query=query, content_type=content_type, timeout=timeout
                )
            except KubeError as exc:
                if exc.code not in _RETRY_CODES or attempt == _RETRIES:
                    raise
                await asyncio.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any,
        query: Mapping[str, Any] | None,
        content_type: str,
        timeout: float | None,
    ) -> dict[str, Any]:
        await self._bucket.take()
        self.requests += 1
        if method != "GET":
            self.writes += 1
        try:
            result = await self.api.call_api(
                path,
                method,
                query_params=[(k, _query_value(v)) for k, v in (query or {}).items() if v is not None],
                header_params={"Accept": JSON, "Content-Type": content_type},
                body=body,
                response_types_map={200: "object", 201: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=True,
                _request_timeout=timeout,
            )
        except ApiException as exc:
            raise KubeError.from_api(exc) from None
        return result if isinstance(result, dict) else {}

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object, or ``None`` if it does not exist."""
        try:
            return await self.request("GET", kind.path(namespace, name))
        except KubeError as exc:
            if exc.not_found:
                return None
            raise

    async def watch(
        self, kind: Kind, *, resource_version: str, label_selector: str | None = None, timeout_seconds: int = 300
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events (``{"type", "object"}``) of ``kind`` in all namespaces from ``resource_version``, until
        the server ends the watch. An expired version raises :class:`KubeError` with code 410."""
        self.requests += 1
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if label_selector:
            query.append(("labelSelector", label_selector))
        try:
            response = await self.api.call_api(
                kind.path(),
                "GET",
                query_params=query,
                header_params={"Accept": JSON},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=False,
                _request_timeout=timeout_seconds + 30,
            )
        except ApiException as exc:
            raise KubeError.from_api(exc) from None
        try:
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")  # NB: one event per line; a line may span many chunks.
                for line in lines:
                    if line.strip():
                        yield _watch_event(line)
            if buffer.strip():
                yield _watch_event(buffer)
        finally:
            response.release()


def _watch_event(line: bytes) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(line)
    if event.get("type") == "ERROR":
        status = event.get("object") or {}
        raise KubeError(int(status.get("code", 500)), str(status.get("reason", "")), str(status.get("message", "")))
    return event


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def connect(kubeconfig: str | None, *, qps: float, burst: int) -> Kube:
    """A client from ``kubeconfig``; without one, the in-cluster service account inside a pod, else ``$KUBECONFIG``
    or ``~/.kube/config`` as kubectl finds them."""
    configuration = client.Configuration()
    if kubeconfig:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        path = (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0] or str(Path.home() / ".kube" / "config")
        await config.load_kube_config(config_file=path, client_configuration=configuration)
    return Kube(client.ApiClient(configuration), qps=qps, burst=burst)
