"""Reading ``apply -f FILE``: YAML or JSON, one document or many, into what the REST API takes.

A file holds any of:

* Kubernetes manifests: one, a list (a YAML/JSON array, ``---``-separated documents, or ``kind: List``);
* bundle documents (``resourcebundle apply``): the REST shape (``name``, ``consumer_name``, ``manifests``,
  ``manifest_configs``, ``delete_option``, ``metadata``; what ``maestro resourcebundle get -o yaml`` prints), or
  an OCM ``ManifestWork`` (``spec.workload.manifests``, ``spec.manifestConfigs``, ``spec.deleteOption``; its
  namespace is the consumer);
* resource documents (``resource apply``): the REST shape (``consumer_name``, ``manifest``, ``update_strategy``,
  ``delete_option``).

Everything wrong with a file is reported at once, as one line, before anything is sent.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from client.errors import CLIError

MANIFESTWORK_GROUP: Final = "work.open-cluster-management.io/"
_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclasses.dataclass(frozen=True)
class Bundle:
    """What ``resourcebundle apply`` creates or replaces."""

    name: str | None
    consumer: str | None
    manifests: list[dict[str, Any]]
    manifest_configs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    delete_option: dict[str, Any] | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Resource:
    """What ``resource apply`` creates or patches: one manifest."""

    consumer: str | None
    manifest: dict[str, Any]
    update_strategy: dict[str, Any] | None = None
    delete_option: dict[str, Any] | None = None
    name: str | None = None


def load(path: str) -> list[Any]:
    """The documents of ``path`` (``-`` is stdin), lists flattened; JSON is read without YAML when it is JSON."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    docs: list[Any] | None = None
    if text.lstrip()[:1] in ("{", "["):
        try:
            docs = [json.loads(text)]
        except ValueError:
            docs = None  # NB: YAML flow style starts with a brace too; let the YAML parser have a go.
    if docs is None:
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            docs = list(yaml.load_all(text, Loader=loader))  # NB: a safe loader (C if built)
        except yaml.YAMLError as exc:
            raise CLIError(f"{path} is neither JSON nor YAML: {' '.join(str(exc).split())}") from None
    flat: list[Any] = []
    for doc in docs:
        _flatten(doc, flat)
    if not flat:
        raise CLIError(f"{path} holds no documents")
    return flat


def _flatten(doc: Any, out: list[Any]) -> None:
    if doc is None:
        return
    if isinstance(doc, list):
        for item in doc:
            _flatten(item, out)
    elif isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        for item in doc["items"]:
            _flatten(item, out)
    else:
        out.append(doc)


def bundles(docs: list[Any], *, consumer: str | None, name: str | None, where: str) -> list[Bundle]:
    """The bundles a file describes: its bundle documents, or one bundle of all its manifests."""
    problems: list[str] = []
    found: list[Bundle] = []
    manifests: list[dict[str, Any]] = []
    for i, doc in enumerate(docs, start=1):
        at = f"document {i}" if len(docs) > 1 else "the document"
        if not isinstance(doc, dict):
            problems.append(f"{at} is a {type(doc).__name__}, not an object")
        elif _is_manifestwork(doc):
            found.append(_from_manifestwork(doc, problems, at))
        elif "manifests" in doc:
            found.append(_from_bundle(doc, problems, at))
        elif "manifest" in doc:
            problems.append(f"{at} is a single resource: use maestro resource apply")
        else:
            _check_manifest(doc, problems, at)
            manifests.append(doc)
    if found and manifests:
        problems.append("mixes bundle documents and bare manifests: put the manifests in a bundle's manifests")
    if manifests:
        found = [Bundle(name=name, consumer=None, manifests=manifests)]
    elif name is not None:
        if len(found) > 1:
            problems.append("--name names one bundle, and the file holds several")
        found = [dataclasses.replace(b, name=name) for b in found]
    for bundle in found:
        if bundle.name is not None and not _NAME.match(bundle.name):
            problems.append(f"bundle name {bundle.name!r} is not a lowercase RFC 1123 name")
    _check(problems, where)
    return [_named(_with_consumer(b, consumer, where), where) for b in found]


def resources(docs: list[Any], *, consumer: str | None, where: str) -> list[Resource]:
    """One resource per manifest (or resource document) of a file."""
    problems: list[str] = []
    found: list[Resource] = []
    for i, doc in enumerate(docs, start=1):
        at = f"document {i}" if len(docs) > 1 else "the document"
        if not isinstance(doc, dict):
            problems.append(f"{at} is a {type(doc).__name__}, not an object")
        elif _is_manifestwork(doc) or "manifests" in doc:
            problems.append(f"{at} is a bundle: use maestro resourcebundle apply")
        elif "manifest" in doc:
            manifest = doc.get("manifest")
            if not isinstance(manifest, dict):
                problems.append(f"{at}: manifest must be an object")
                continue
            _check_manifest(manifest, problems, f"{at}: manifest")
            found.append(
                Resource(
                    consumer=_opt_str(doc, "consumer_name", problems, at),
                    manifest=manifest,
                    update_strategy=_opt_obj(doc, "update_strategy", problems, at),
                    delete_option=_opt_obj(doc, "delete_option", problems, at),
                    name=_opt_str(doc, "name", problems, at),
                )
            )
        else:
            _check_manifest(doc, problems, at)
            found.append(Resource(consumer=None, manifest=doc))
    _check(problems, where)
    return [_with_consumer(r, consumer, where) for r in found]


def identity(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What makes two manifests the same object: apiVersion, kind, namespace and name."""
    meta = manifest.get("metadata") or {}
    ident_meta = {"name": meta.get("name")}
    if meta.get("namespace"):
        ident_meta["namespace"] = meta["namespace"]
    return {"apiVersion": manifest.get("apiVersion"), "kind": manifest.get("kind"), "metadata": ident_meta}


def default_bundle_name(consumer: str, manifest: Mapping[str, Any]) -> str:
    """The name of a one-manifest bundle given without one: stable, so applying the file again updates it
    (``cluster1-deployment-default-nginx``). Names are unique across consumers, hence the consumer."""
    meta = manifest.get("metadata") or {}
    parts = [consumer, str(manifest.get("kind") or ""), str(meta.get("namespace") or ""), str(meta.get("name") or "")]
    text = "-".join(p for p in parts if p).lower()
    text = re.sub(r"[^a-z0-9.-]+", "-", text)
    text = re.sub(r"-{2,}", "-", text).strip("-.")
    return text[:253].rstrip("-.")


# -- internals --------------------------------------------------------------------------------------


def _is_manifestwork(doc: Mapping[str, Any]) -> bool:
    return doc.get("kind") == "ManifestWork" and str(doc.get("apiVersion", "")).startswith(MANIFESTWORK_GROUP)


def _from_manifestwork(doc: Mapping[str, Any], problems: list[str], at: str) -> Bundle:
    meta = _obj(doc.get("metadata"))
    spec = _obj(doc.get("spec"))
    workload = _obj(spec.get("workload"))
    manifests = workload.get("manifests")
    if not isinstance(manifests, list) or not manifests:
        problems.append(f"{at}: spec.workload.manifests must be a non-empty list")
        manifests = []
    for j, manifest in enumerate(manifests):
        _check_manifest(manifest, problems, f"{at}: spec.workload.manifests[{j}]")
    return Bundle(
        name=meta.get("name"),
        consumer=meta.get("namespace"),
        manifests=manifests,
        manifest_configs=list(spec.get("manifestConfigs") or []),
        delete_option=spec.get("deleteOption"),
        metadata={k: meta[k] for k in ("labels", "annotations") if meta.get(k)},
    )


def _from_bundle(doc: Mapping[str, Any], problems: list[str], at: str) -> Bundle:
    manifests = doc.get("manifests")
    if not isinstance(manifests, list) or not manifests:
        problems.append(f"{at}: manifests must be a non-empty list")
        manifests = []
    for j, manifest in enumerate(manifests):
        _check_manifest(manifest, problems, f"{at}: manifests[{j}]")
    configs = doc.get("manifest_configs")
    if configs is not None and not isinstance(configs, list):
        problems.append(f"{at}: manifest_configs must be a list")
        configs = None
    meta = _obj(doc.get("metadata"))
    name = _opt_str(doc, "name", problems, at)
    if name is None and isinstance(meta.get("name"), str):
        name = meta["name"]
    return Bundle(
        name=name,
        consumer=_opt_str(doc, "consumer_name", problems, at),
        manifests=manifests,
        manifest_configs=list(configs or []),
        delete_option=_opt_obj(doc, "delete_option", problems, at),
        metadata={k: meta[k] for k in ("labels", "annotations") if meta.get(k)},
    )


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _check_manifest(manifest: Any, problems: list[str], at: str) -> None:
    if not isinstance(manifest, dict):
        problems.append(f"{at} is not a Kubernetes object")
        return
    missing = [k for k in ("apiVersion", "kind") if not manifest.get(k)]
    meta = manifest.get("metadata")
    if not isinstance(meta, dict) or not (meta.get("name") or meta.get("generateName")):
        missing.append("metadata.name")
    if missing:
        problems.append(f"{at} is not a Kubernetes object: no {', '.join(missing)}")


def _opt_str(doc: Mapping[str, Any], key: str, problems: list[str], at: str) -> str | None:
    value = doc.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        problems.append(f"{at}: {key} must be a string")
        return None
    return value


def _opt_obj(doc: Mapping[str, Any], key: str, problems: list[str], at: str) -> dict[str, Any] | None:
    value = doc.get(key)
    if value is None or value == {}:
        return None
    if not isinstance(value, dict):
        problems.append(f"{at}: {key} must be an object")
        return None
    return value


def _with_consumer(item: Any, consumer: str | None, where: str) -> Any:
    """Fill in ``--consumer``; a file naming another consumer is an error, not silently retargeted."""
    if consumer is not None and item.consumer is not None and item.consumer != consumer:
        raise CLIError(f"{where} targets consumer {item.consumer!r}, not --consumer {consumer!r}")
    chosen = item.consumer or consumer
    if not chosen:
        raise CLIError(f"{where} does not say which consumer: give --consumer NAME")
    return dataclasses.replace(item, consumer=chosen)


def _named(bundle: Bundle, where: str) -> Bundle:
    if bundle.name is not None:
        return bundle
    if len(bundle.manifests) != 1:
        raise CLIError(f"{where}: a bundle of {len(bundle.manifests)} manifests needs a name: give --name")
    assert bundle.consumer is not None
    return dataclasses.replace(bundle, name=default_bundle_name(bundle.consumer, bundle.manifests[0]))


def _check(problems: list[str], where: str) -> None:
    if problems:
        raise CLIError(f"{where}: {'; '.join(problems)}")
