"""The statuses a simulated agent reports: what upstream's work agent would send for a work it applied (or failed
to apply) or deleted, with no cluster behind it. Pure functions of the work's bundle and version."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from protocol import payloads, types


def now() -> str:
    return types.format_timestamp(datetime.now(UTC).replace(microsecond=0))


def condition(
    kind: str, status: payloads.ConditionStatus, reason: str, message: str, generation: int, when: str
) -> payloads.Condition:
    return payloads.Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        lastTransitionTime=when,
        observedGeneration=generation,
    )


def json_feedback(bundle: dict[str, Any], meta: dict[str, Any], replicas: object) -> list[payloads.FeedbackValue]:
    """JsonRaw values for the manifest's ``JSONPaths`` feedback rules on ``.status``: a plausible object status
    (for a workload, all replicas ready), as a real agent would read it from the cluster."""
    simulated: dict[str, Any] = {"observedGeneration": 1}
    if isinstance(replicas, int):
        simulated |= {
            "replicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "updatedReplicas": replicas,
        }
    out: list[payloads.FeedbackValue] = []
    configs = bundle.get("manifestConfigs")
    for config in configs if isinstance(configs, list) else []:
        ident = config.get("resourceIdentifier") if isinstance(config, dict) else None
        if (
            not isinstance(ident, dict)
            or ident.get("name") != meta.get("name")
            or ident.get("namespace", "") != meta.get("namespace", "")
        ):
            continue
        for rule in config.get("feedbackRules") or []:
            for path in rule.get("jsonPaths") or [] if isinstance(rule, dict) else []:
                if isinstance(path, dict) and path.get("path") == ".status":
                    raw = json.dumps(simulated, separators=(",", ":"), sort_keys=True)
                    out.append(
                        {"name": str(path.get("name", "status")), "fieldValue": {"type": "JsonRaw", "jsonRaw": raw}}
                    )
    return out


def applied(bundle: dict[str, Any], *, version: int, failed: bool) -> payloads.ManifestBundleStatus:
    when = now()
    applied: payloads.ConditionStatus = "False" if failed else "True"
    manifests = bundle.get("manifests")
    resource_status: list[payloads.ManifestCondition] = []
    for ordinal, manifest in enumerate(manifests if isinstance(manifests, list) else []):
        if not isinstance(manifest, dict):
            continue
        api_version = str(manifest.get("apiVersion", ""))
        group, _, api = api_version.rpartition("/")
        kind = str(manifest.get("kind", ""))
        meta = manifest.get("metadata") if isinstance(manifest.get("metadata"), dict) else {}
        spec = manifest.get("spec") if isinstance(manifest.get("spec"), dict) else {}
        replicas = spec.get("replicas") if isinstance(spec, dict) else None
        feedback: list[payloads.FeedbackValue] = (
            [{"name": "ReadyReplicas", "fieldValue": {"type": "Integer", "integer": replicas}}]
            if isinstance(replicas, int) and not failed
            else [{"name": "Simulated", "fieldValue": {"type": "String", "string": "failed" if failed else "ok"}}]
        )
        if not failed:
            feedback += json_feedback(bundle, meta or {}, replicas)
        resource_status.append(
            payloads.ManifestCondition(
                resourceMeta=payloads.ResourceMeta(
                    ordinal=ordinal,
                    group=group,
                    version=api,
                    kind=kind,
                    resource=kind.lower() + "s" if kind else "",
                    name=str((meta or {}).get("name", "")),
                    namespace=str((meta or {}).get("namespace", "")),
                ),
                statusFeedback=payloads.StatusFeedback(values=feedback),
                conditions=[
                    condition("Applied", applied, "AppliedManifestComplete", "Apply manifest complete", version, when),
                    condition("Available", applied, "ResourceAvailable", "Resource is available", version, when),
                    condition("StatusFeedbackSynced", "True", "StatusFeedbackSynced", "", version, when),
                ],
            )
        )
    if failed:
        conditions = [
            condition("Applied", "False", "AppliedManifestWorkFailed", "Simulated apply failure", version, when),
            condition("Available", "Unknown", "ResourcesNotAvailable", "Not applied", version, when),
        ]
    else:
        conditions = [
            condition("Applied", "True", "AppliedManifestWorkComplete", "Apply manifest work complete", version, when),
            condition("Available", "True", "ResourcesAvailable", "All resources are available", version, when),
        ]
    return payloads.ManifestBundleStatus(conditions=conditions, resourceStatus=resource_status)


def deleted(version: int) -> payloads.ManifestBundleStatus:
    """``Deleted=True`` (reason ``ManifestsDeleted``), as the work agent reports a finished delete."""
    gone = condition("Deleted", "True", "ManifestsDeleted", "The manifests are deleted", version, now())
    return payloads.ManifestBundleStatus(conditions=[gone], resourceStatus=[])
