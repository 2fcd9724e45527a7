"""Source-facing CloudEvents: what a source (a client system) publishes over gRPC, as use cases.

Semantics follow upstream's gRPC ``Publish`` (reference §2.2): ``spec.create_request`` inserts a bundle whose id
is the event's ``resourceid`` (chosen by the source); ``spec.update_request`` replaces its spec with a version
check (0 = don't check); ``spec.delete_request`` starts the two-phase delete. An update or a delete must name the
bundle's consumer, and come from the bundle's source: a source acts on its own bundles only, so that per-source
authorization (``server.grpc.access``) also covers what already exists. Every failure is a domain error with a
reason the source can act on, so the gRPC layer can map it to a proper status code.
"""

from __future__ import annotations

import json
from typing import Any

import databases
from cloudevents.core.v1.event import CloudEvent

from protocol import events, types
from protocol.errors import ProtocolError
from server.errors import BadRequest, Forbidden, NotFound, ValidationError
from server.services import resources
from server.services import validation as v
from server.store.rows import ResourceRow


def _metadata(event: CloudEvent) -> dict[str, Any]:
    raw: Any = event.get_extension(types.EXT_METADATA)
    if raw is None or raw == "":
        return {}
    try:
        meta = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise ValidationError("the metadata extension is not valid JSON") from None
    if not isinstance(meta, dict):
        raise ValidationError("the metadata extension must be a JSON object")
    return meta


def _spec(event: CloudEvent, consumer: str) -> resources.Spec:
    try:
        data = events.data_object(event)
    except ProtocolError as exc:
        raise ValidationError(str(exc)) from None
    problems = v.Problems()
    body = {
        "manifests": data.get("manifests"),
        "delete_option": data.get("deleteOption") or None,
        "manifest_configs": data.get("manifestConfigs"),
        "metadata": {k: val for k, val in _metadata(event).items() if k in ("name", "labels", "annotations")},
    }
    spec = resources.bundle_spec(body, problems, consumer_name=consumer)
    problems.raise_if_any()
    return spec


def _identity(event: CloudEvent) -> tuple[str, str, int]:
    try:
        rid = types.str_extension(event, types.EXT_RESOURCE_ID)
        consumer = types.str_extension(event, types.EXT_CLUSTER_NAME)
        version = types.int_extension(event, types.EXT_RESOURCE_VERSION, default=0)
    except ProtocolError as exc:
        raise ValidationError(str(exc)) from None
    problems = v.Problems()
    if not v.is_uuid(rid):
        problems.add(f"resourceid {rid!r} must be a UUID")
    if not v.is_dns1123_label(consumer):
        problems.add(f"clustername {consumer!r} is not a valid consumer name")
    if version < 0:
        problems.add("resourceversion must not be negative")
    problems.raise_if_any()
    return rid, consumer, version


def _check_owner(row: ResourceRow, *, source: str, consumer: str) -> None:
    """Refuse an update or delete for a bundle of another source, or naming another consumer."""
    if row.source != source:
        raise Forbidden(f"resource {row.id} belongs to source {row.source!r}, not {source!r}")
    if row.consumer_name != consumer:
        raise ValidationError(f"resource {row.id} belongs to consumer {row.consumer_name!r}, not {consumer!r}")


async def publish(db: databases.Database, event: CloudEvent, *, actor: str | None = None) -> ResourceRow | None:
    """Apply one spec event from a source. Returns the row written (None for a delete).

    ``actor``, recorded in the spec log, is the authenticated subject; None: the event's source."""
    try:
        kind = types.event_type(event)
    except ProtocolError as exc:
        raise BadRequest(str(exc)) from None
    if kind.subresource != "spec" or kind.data_type != types.MANIFESTBUNDLE_DATA_TYPE:
        raise BadRequest(f"unsupported event type {event.get_type()!r}: sources publish manifestbundles spec events")
    rid, consumer, version = _identity(event)
    source = event.get_source()
    actor = actor or source
    if kind.action == types.CREATE_REQUEST:
        spec = _spec(event, consumer)
        created = await resources.create(db, rid=rid, name=rid, source=source, type="Bundle", spec=spec, actor=actor)
        return created.row
    if kind.action == types.UPDATE_REQUEST:
        spec = _spec(event, consumer)

        def build(row: ResourceRow) -> resources.Spec:
            _check_owner(row, source=source, consumer=consumer)
            return spec

        return await resources.update(db, rid, version=version, build=build, actor=actor)
    if kind.action == types.DELETE_REQUEST:
        try:
            row = await resources.get(db, rid)
        except NotFound:
            return None  # as upstream: deleting what does not exist is a no-op
        # NB: a row's source and consumer never change, so checking before the delete's own transaction is safe.
        _check_owner(row, source=source, consumer=consumer)
        await resources.mark_deleting(db, rid, actor=actor)
        return None
    raise BadRequest(f"unsupported action {kind.action!r}: sources publish create, update and delete requests")
