"""Helpers of the agent e2e tests: REST calls on the hub, waiting for status, reading objects with kubectl."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.e2e.hub_support import eventually

AW_GROUP = "work.maestro-py.io"


def deployment(
    name: str, namespace: str, *, replicas: int = 1, image: str = "nginxinc/nginx-unprivileged"
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"image": image, "name": "main"}]},
            },
        },
    }


def configmap(name: str, namespace: str, data: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data or {"key": "value"},
    }


def condition(conditions: list[dict[str, Any]] | None, kind: str) -> dict[str, Any]:
    return next((c for c in conditions or [] if c.get("type") == kind), {})


def is_true(conditions: list[dict[str, Any]] | None, kind: str) -> bool:
    return condition(conditions, kind).get("status") == "True"


async def ok(response: httpx.Response, code: int = 200) -> Any:
    assert response.status_code == code, (
        f"{response.request.method} {response.request.url}: {response.status_code} {response.text}"
    )
    return response.json() if response.content else None


async def wait_for(
    rest: httpx.AsyncClient, path: str, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 30.0
) -> dict[str, Any]:
    """GET ``path`` until ``predicate(body)`` holds; the last body is in the failure message."""
    last: dict[str, Any] = {}

    async def check() -> bool:
        nonlocal last
        response = await rest.get(path)
        if response.status_code != 200:
            last = {"status_code": response.status_code, "text": response.text}
            return False
        last = response.json()
        try:
            return bool(predicate(last))
        except (KeyError, IndexError, TypeError):
            return False

    try:
        await eventually(check, timeout=timeout, interval=0.2)
    except TimeoutError:
        raise AssertionError(
            f"GET {path}: condition not met in {timeout}s; last answer:\n{json.dumps(last, indent=1)[:4000]}"
        ) from None
    return last


async def wait_gone(rest: httpx.AsyncClient, path: str, *, timeout: float = 30.0) -> None:
    async def gone() -> bool:
        return (await rest.get(path)).status_code == 404

    try:
        await eventually(gone, timeout=timeout, interval=0.2)
    except TimeoutError:
        raise AssertionError(
            f"GET {path} still answers after {timeout}s: {(await rest.get(path)).text[:2000]}"
        ) from None


def get_json(kubectl: Callable[..., Any], *args: str) -> dict[str, Any] | None:
    """``kubectl get ... -o json``; ``None`` when it does not exist."""
    result = kubectl("get", *args, "-o", "json", check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr or "not found" in result.stderr:
            return None
        raise AssertionError(f"kubectl get {' '.join(args)}: {result.stderr}")
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def wait_kube(
    kubectl: Callable[..., Any], predicate: Callable[[dict[str, Any] | None], bool], *args: str, timeout: float = 30.0
) -> dict[str, Any] | None:
    """Poll ``kubectl get ARGS -o json`` until ``predicate(object or None)`` holds."""
    deadline = time.monotonic() + timeout
    obj = get_json(kubectl, *args)
    while not predicate(obj):
        if time.monotonic() > deadline:
            last = json.dumps(obj, indent=1)[:3000]
            raise AssertionError(f"kubectl get {' '.join(args)}: condition not met in {timeout}s; last:\n{last}")
        time.sleep(0.25)
        obj = get_json(kubectl, *args)
    return obj


def owner_kinds(obj: dict[str, Any] | None) -> list[str]:
    return [r.get("kind", "") for r in ((obj or {}).get("metadata") or {}).get("ownerReferences") or []]


def feedback(resource_status: dict[str, Any], name: str) -> Any:
    """The value of status feedback ``name`` of one ``resourceStatus`` entry (JsonRaw decoded)."""
    for value in (resource_status.get("statusFeedback") or {}).get("values") or []:
        if value.get("name") == name:
            field = value["fieldValue"]
            if field["type"] == "JsonRaw":
                return json.loads(field["jsonRaw"])
            return field[field["type"].lower()]
    raise KeyError(name)
