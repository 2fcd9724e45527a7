"""Validation of request bodies and manifests.

Every validator collects all problems and raises one :class:`server.errors.ValidationError` listing them, so a
user fixes a body in one round trip. Unknown fields are errors: a typo such as ``delete_opton`` must not be
silently ignored on a system that deletes things.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from typing import Any, Final

from server.errors import ValidationError

DNS1123_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE: Final = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME: Final = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

UPDATE_STRATEGIES: Final = ("ServerSideApply", "Update", "CreateOnly", "ReadOnly")
PROPAGATION_POLICIES: Final = ("Foreground", "Orphan", "SelectivelyOrphan")
FORBIDDEN_METADATA: Final = ("generateName", "resourceVersion", "deletionGracePeriodSeconds")
MAX_VERSION: Final = 2**31 - 1


class Problems:
    """Accumulates field errors; ``raise_if_any`` ends validation."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, text: str) -> None:
        self.items.append(text)

    def raise_if_any(self) -> None:
        if self.items:
            raise ValidationError(self.items)


def check_fields(body: Mapping[str, Any], allowed: set[str], problems: Problems, *, where: str = "body") -> None:
    for key in sorted(set(body) - allowed):
        problems.add(f"{where}: unknown field '{key}'")


def is_dns1123_label(name: object) -> bool:
    return isinstance(name, str) and len(name) <= 63 and bool(DNS1123_LABEL.fullmatch(name))


def is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        # NB: canonical form only; uuid.UUID() also reads '{...}', 'urn:uuid:...' and upper case, which would then
        # be stored and compared as different ids.
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def new_uuid() -> str:
    """A random (version 4) UUID in canonical form, as ``str(uuid.uuid4())`` writes it, at a third of its CPU
    (``uuid.UUID`` checks and converts in Python what is known here)."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def new_uuid_hex() -> str:
    """:func:`new_uuid` as 32 hex digits, as ``uuid.uuid4().hex`` writes it."""
    h = os.urandom(16).hex()
    return f"{h[:12]}4{h[13:16]}{_VARIANT[int(h[16], 16) & 3]}{h[17:]}"


_VARIANT: Final = "89ab"
"""The first hex digit of a version 4 UUID's fourth group: its two top bits are the variant, ``10``."""


def labels(value: object, problems: Problems, *, field: str = "labels") -> dict[str, str] | None:
    """A Kubernetes-style label map, or None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.add(f"{field} must be an object of string values")
        return None
    for key, val in value.items():
        prefix, slash, name = key.rpartition("/")
        bad_prefix = bool(slash) and not (0 < len(prefix) <= 253 and DNS1123_SUBDOMAIN.fullmatch(prefix))
        if bad_prefix or not (0 < len(name) <= 63 and QUALIFIED_NAME.fullmatch(name)):
            problems.add(f"{field}: invalid label key {key!r}")
        if not isinstance(val, str) or len(val) > 63 or not LABEL_VALUE.fullmatch(val):
            problems.add(
                f"{field}: invalid value for label {key!r}: must be a string of at most 63 characters"
                " of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
            )
    return dict(value)


def version(value: object, problems: Problems, *, field: str = "version", allow_zero: bool = True) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1) or value > MAX_VERSION:
        problems.add(f"{field} must be an integer between {0 if allow_zero else 1} and {MAX_VERSION}")
        return 0
    return value


def manifest(value: object, problems: Problems, *, where: str) -> tuple[str, str, str, str] | None:
    """Check one Kubernetes object; return its (apiVersion, kind, namespace, name) identity."""
    if not isinstance(value, dict):
        problems.add(f"{where} must be a Kubernetes object")
        return None
    api_version, kind, meta = value.get("apiVersion"), value.get("kind"), value.get("metadata")
    ok = True
    if not isinstance(api_version, str) or not api_version or " " in api_version:
        problems.add(f"{where}.apiVersion is required")
        ok = False
    if not isinstance(kind, str) or not kind:
        problems.add(f"{where}.kind is required")
        ok = False
    if not isinstance(meta, dict):
        problems.add(f"{where}.metadata is required")
        return None
    name, namespace = meta.get("name"), meta.get("namespace", "")
    if not isinstance(name, str) or not name:
        problems.add(f"{where}.metadata.name is required")
        ok = False
    elif len(name) > 253 or (not DNS1123_SUBDOMAIN.fullmatch(name) and ":" not in name):
        problems.add(f"{where}.metadata.name {name!r} is not a valid Kubernetes name")
        ok = False
    if namespace not in ("", None) and not is_dns1123_label(namespace):
        problems.add(f"{where}.metadata.namespace {namespace!r} is not a valid namespace name")
        ok = False
    for key in FORBIDDEN_METADATA:
        if key in meta:
            problems.add(f"{where}.metadata.{key} must not be set")
            ok = False
    for key in ("labels", "annotations"):
        if key in meta and not (isinstance(meta[key], dict) and all(isinstance(v, str) for v in meta[key].values())):
            problems.add(f"{where}.metadata.{key} must be an object of string values")
            ok = False
    if "labels" in meta and isinstance(meta["labels"], dict):
        labels(meta["labels"], problems, field=f"{where}.metadata.labels")
    if "finalizers" in meta and not (
        isinstance(meta["finalizers"], list) and all(isinstance(f, str) and f for f in meta["finalizers"])
    ):
        problems.add(f"{where}.metadata.finalizers must be a list of strings")
        ok = False
    if not ok:
        return None
    return str(api_version), str(kind), str(namespace or ""), str(name)


def manifests(value: object, problems: Problems, *, field: str = "manifests") -> list[dict[str, Any]]:
    """A non-empty list of Kubernetes objects with unique (apiVersion, kind, namespace, name)."""
    if not isinstance(value, list) or not value:
        problems.add(f"{field} must be a non-empty list of Kubernetes objects")
        return []
    seen: dict[tuple[str, str, str, str], int] = {}
    for i, item in enumerate(value):
        ident = manifest(item, problems, where=f"{field}[{i}]")
        if ident is None:
            continue
        if ident in seen:
            problems.add(f"{field}[{i}] duplicates {field}[{seen[ident]}] ({'/'.join(p for p in ident if p)})")
        else:
            seen[ident] = i
    return list(value)


def delete_option(value: object, problems: Problems, *, field: str = "delete_option") -> dict[str, Any]:
    """``{"propagationPolicy": ...}`` (default Foreground), plus ``selectivelyOrphans`` for SelectivelyOrphan."""
    if value is None:
        return {"propagationPolicy": "Foreground"}
    if not isinstance(value, dict):
        problems.add(f'{field} must be an object such as {{"propagationPolicy": "Orphan"}}')
        return {}
    check_fields(value, {"propagationPolicy", "selectivelyOrphans", "ttlSecondsAfterFinished"}, problems, where=field)
    policy = value.get("propagationPolicy", "Foreground")
    if policy not in PROPAGATION_POLICIES:
        problems.add(f"{field}.propagationPolicy must be one of {', '.join(PROPAGATION_POLICIES)}")
    return {**value, "propagationPolicy": policy}


def update_strategy(value: object, problems: Problems, *, field: str = "update_strategy") -> dict[str, Any]:
    """``{"type": ...}`` (default ServerSideApply) with an optional ``serverSideApply`` block."""
    if value is None:
        return {"type": "ServerSideApply"}
    if not isinstance(value, dict):
        problems.add(f'{field} must be an object such as {{"type": "Update"}}')
        return {}
    check_fields(value, {"type", "serverSideApply"}, problems, where=field)
    kind = value.get("type", "ServerSideApply")
    if kind not in UPDATE_STRATEGIES:
        problems.add(f"{field}.type must be one of {', '.join(UPDATE_STRATEGIES)}")
    ssa = value.get("serverSideApply")
    if ssa is not None and not isinstance(ssa, dict):
        problems.add(f"{field}.serverSideApply must be an object")
    return {**value, "type": kind}


def manifest_configs(value: object, problems: Problems, *, field: str = "manifest_configs") -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        problems.add(f"{field} must be a list of objects")
        return []
    for i, cfg in enumerate(value):
        ident = cfg.get("resourceIdentifier")
        if (
            not isinstance(ident, dict)
            or not isinstance(ident.get("name", ""), str)
            or not isinstance(ident.get("resource", ""), str)
        ):
            problems.add(f"{field}[{i}].resourceIdentifier must be an object with resource and name")
        if "updateStrategy" in cfg:
            update_strategy(cfg["updateStrategy"], problems, field=f"{field}[{i}].updateStrategy")
        if "feedbackRules" in cfg and not isinstance(cfg["feedbackRules"], list):
            problems.add(f"{field}[{i}].feedbackRules must be a list")
    return list(value)
