"""The AppliedWork resource and its payload Secret: names, shapes and (de)serialisation.

An AppliedWork is cluster-scoped and named by the hub's resource id. Its spec carries the manifests'
identities and the bundle's hash; the bundle itself (manifests, configs, delete option) lives gzip-compressed in
a Secret ``work-<resource id>`` in the agent's namespace, owned by the AppliedWork, the way Helm keeps releases:
whoever may list AppliedWorks does not thereby read Secret data the hub sent.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any, Final

import yaml

from agent.kube import Kind

GROUP: Final = "work.maestro-py.io"
VERSION: Final = "v1alpha1"
PLURAL: Final = "appliedworks"
KIND: Final = "AppliedWork"
API_VERSION: Final = f"{GROUP}/{VERSION}"
CRD_NAME: Final = f"{PLURAL}.{GROUP}"
APPLIED_WORK: Final = Kind(group=GROUP, version=VERSION, kind=KIND, resource=PLURAL, namespaced=False)
SECRET: Final = Kind(group="", version="v1", kind="Secret", resource="secrets", namespaced=True)
CRD: Final = Kind(
    group="apiextensions.k8s.io",
    version="v1",
    kind="CustomResourceDefinition",
    resource="customresourcedefinitions",
    namespaced=False,
)

#: Label on every object the agent writes (its value: the AppliedWork's name); the watches select by it.
WORK_LABEL: Final = f"{GROUP}/appliedwork"
#: Label on payload Secrets.
PAYLOAD_LABEL: Final = f"{GROUP}/payload-of"
PAYLOAD_TYPE: Final = f"{GROUP}/work-payload"
PAYLOAD_KEY: Final = "bundle.json.gz"
FINALIZER: Final = f"{GROUP}/cleanup"

DEFAULT_STRATEGY: Final = "ServerSideApply"


def crd_manifest() -> dict[str, Any]:
    """The AppliedWork CustomResourceDefinition (also shipped in the agent's Helm chart)."""
    text = resources.files("agent").joinpath("manifests/appliedworks.crd.yaml").read_text()
    manifest: dict[str, Any] = yaml.safe_load(text)
    return manifest


def bundle_hash(bundle: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(bundle, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def manifest_hash(manifest: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """What decides whether a manifest must be applied again: the manifest and its update strategy."""
    text = json.dumps([manifest, config.get("updateStrategy") or {}], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def secret_name(resource_id: str) -> str:
    return f"work-{resource_id}"


def encode_payload(bundle: Mapping[str, Any]) -> str:
    raw = json.dumps(bundle, sort_keys=True, separators=(",", ":")).encode()
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode()


def decode_payload(secret: Mapping[str, Any]) -> dict[str, Any]:
    """The bundle kept in a payload Secret; raises ``ValueError`` if it is not one."""
    data = (secret.get("data") or {}).get(PAYLOAD_KEY)
    if not isinstance(data, str):
        raise ValueError(f"secret has no {PAYLOAD_KEY}")
    try:
        bundle = json.loads(gzip.decompress(base64.b64decode(data)))
    except (OSError, ValueError) as exc:
        raise ValueError(f"secret {PAYLOAD_KEY} is not a gzip-compressed JSON bundle: {exc}") from None
    if not isinstance(bundle, dict):
        raise ValueError("the payload is not a JSON object")
    return bundle


def strategy_of(config: Mapping[str, Any] | None) -> str:
    strategy = ((config or {}).get("updateStrategy") or {}).get("type") or DEFAULT_STRATEGY
    return str(strategy)


def identity(manifest: Any) -> dict[str, str]:
    """group/version/kind/namespace/name of a manifest (empty strings where absent or malformed)."""
    if not isinstance(manifest, Mapping):
        return {"group": "", "version": "", "kind": "", "namespace": "", "name": ""}
    api_version = manifest.get("apiVersion")
    group, _, version = (api_version if isinstance(api_version, str) else "").rpartition("/")
    meta = manifest.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    kind = manifest.get("kind")
    return {
        "group": group,
        "version": version,
        "kind": kind if isinstance(kind, str) else "",
        "namespace": str(meta.get("namespace") or ""),
        "name": str(meta.get("name") or ""),
    }


def config_for(manifest: Any, configs: list[Any], *, resource: str | None = None) -> dict[str, Any]:
    """The manifestConfigs entry whose resourceIdentifier matches the manifest (``{}`` if none does).

    A resourceIdentifier names ``group``, ``resource`` (the plural), ``name`` and ``namespace``. Before
    discovery the plural is unknown (``resource=None``) and only group, name and namespace are compared.
    """
    ident = identity(manifest)
    for config in configs:
        rid = config.get("resourceIdentifier") if isinstance(config, Mapping) else None
        if not isinstance(rid, Mapping):
            continue
        if (
            str(rid.get("group") or "") == ident["group"]
            and str(rid.get("name") or "") == ident["name"]
            and str(rid.get("namespace") or "") == ident["namespace"]
            and (resource is None or str(rid.get("resource") or "") in ("", resource))
        ):
            return dict(config)
    return {}


def spec_for(
    *,
    resource_id: str,
    consumer: str,
    source: str,
    hub: str,
    version: int,
    metadata: str,
    bundle: Mapping[str, Any],
    namespace: str,
) -> dict[str, Any]:
    """The AppliedWork spec for one work as the hub sent it."""
    manifests = _list(bundle.get("manifests"))
    configs = _list(bundle.get("manifestConfigs"))
    return {
        "consumer": consumer,
        "source": source,
        "hub": hub,
        "resourceVersion": version,
        "workMetadata": metadata,
        "payload": {"secretName": secret_name(resource_id), "secretNamespace": namespace, "hash": bundle_hash(bundle)},
        "manifests": [
            {"ordinal": i, **identity(m), "updateStrategy": strategy_of(config_for(m, configs))}
            for i, m in enumerate(manifests)
        ],
        "manifestConfigs": configs,
        "deleteOption": dict(bundle.get("deleteOption") or {}),
    }


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    """The reference every written object carries (not a controller reference, as upstream)."""
    return {"apiVersion": API_VERSION, "kind": KIND, "name": name, "uid": uid, "blockOwnerDeletion": False}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
