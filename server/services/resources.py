"""Resource use cases, for single resources and bundles alike.

A single resource (the ``/resources`` API) is stored as a bundle of one manifest with ``type = 'Single'``, so
the dispatcher, the agents and the status path know one shape only. Each write is one transaction that changes
the row and appends its spec event carrying the resource as written and who wrote it (``actor``), whose NOTIFY
wakes the dispatcher on commit. Creates that arrive while another is being written share one statement, and so one
transaction (group commit, :mod:`server.store.batching`); a create that such a batch does not write (its id or name
is taken, its consumer is missing, the batch failed) is then written alone, for the answer it would have had alone.

Versions: a row starts at 1 and increments only when the spec changes. A write carrying a non-zero version that
differs from the stored one is a conflict; version 0 means "don't check". Delete is two-phase: the row is marked
``deleted_at`` and a Delete event is appended; the agent's ``Deleted=True`` status removes it. A row being
deleted refuses updates, and deleting it again changes nothing.

Create is idempotent by id: a client that sets ``id`` (a UUID it chose) can retry a create whose answer it never
got (a dropped connection, a 503) without making a second resource. If a resource with that id exists with the
same name, consumer, source, type and spec, the create returns it (``new`` false: 200 instead of 201); otherwise
it is a 409 that says what differs.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg
import databases

from server.errors import Conflict, NotFound, ValidationError
from server.services import validation as v
from server.store import resources
from server.store.batching import GroupCommit
from server.store.db import connection, transaction
from server.store.rows import ResourceRow, ResourceType

SINGLE_FIELDS = {
    "id",
    "kind",
    "href",
    "name",
    "consumer_name",
    "version",
    "manifest",
    "update_strategy",
    "delete_option",
    "status",
    "created_at",
    "updated_at",
    "deleted_at",
}
BUNDLE_FIELDS = {
    "id",
    "kind",
    "href",
    "name",
    "consumer_name",
    "version",
    "metadata",
    "manifests",
    "manifest_configs",
    "delete_option",
    "status",
    "created_at",
    "updated_at",
    "deleted_at",
}
READ_ONLY = ("href", "status", "created_at", "updated_at", "deleted_at")
ANONYMOUS = "anonymous"
"""The actor recorded in the spec log for a write nobody authenticated (REST with authentication off)."""


@dataclass(frozen=True)
class Spec:
    """What a client asks for: the stored ``payload`` is derived from it."""

    consumer_name: str
    manifests: list[dict[str, Any]]
    delete_option: dict[str, Any]
    manifest_configs: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def payload(self, resource_id: str) -> dict[str, Any]:
        meta = {**self.metadata, "uid": resource_id, "namespace": self.consumer_name}
        meta.setdefault("name", resource_id)
        return {
            "metadata": meta,
            "data": {
                "manifests": self.manifests,
                "deleteOption": self.delete_option,
                "manifestConfigs": self.manifest_configs,
            },
        }


def _plural(kind: str) -> str:
    """Kind to resource name, the way Kubernetes pluralises (good for every built-in kind we ship)."""
    lower = kind.lower()
    if lower == "endpoints":
        return lower
    if lower.endswith(("s", "x", "ch", "sh")):
        return lower + "es"
    if lower.endswith("y") and len(lower) > 1 and lower[-2] not in "aeiou":
        return lower[:-1] + "ies"
    return lower + "s"


def resource_identifier(manifest: dict[str, Any]) -> dict[str, str]:
    group = str(manifest.get("apiVersion", "")).rpartition("/")[0]
    meta = manifest.get("metadata") or {}
    ident = {"group": group, "resource": _plural(str(manifest.get("kind", ""))), "name": str(meta.get("name", ""))}
    if meta.get("namespace"):
        ident["namespace"] = str(meta["namespace"])
    return ident


def _identity(body: dict[str, Any], problems: v.Problems, *, kind: str) -> tuple[str, str]:
    if body.get("kind") not in (None, kind):
        problems.add(f"kind must be '{kind}'")
    # NB: only a missing or empty id/name takes the default; other falsy values (0, false, []) are type errors.
    rid = body.get("id")
    if rid is None or rid == "":
        rid = v.new_uuid()
    elif not v.is_uuid(rid):
        problems.add("id must be a UUID")
    name = body.get("name")
    if name is None or name == "":
        name = rid
    if not isinstance(name, str) or len(name) > 253 or not v.DNS1123_SUBDOMAIN.fullmatch(name):
        problems.add("name must be a lowercase RFC 1123 subdomain of at most 253 characters")
    return str(rid), str(name)


def _consumer(body: dict[str, Any], problems: v.Problems) -> str:
    name = body.get("consumer_name")
    if not v.is_dns1123_label(name):
        problems.add("consumer_name is required and must name an existing consumer")
        return ""
    return str(name)


def single_spec(body: dict[str, Any], problems: v.Problems, *, consumer_name: str) -> Spec:
    """The spec of a single resource: one manifest, status feedback of its whole ``.status``."""
    manifest = body.get("manifest")
    valid = v.manifest(manifest, problems, where="manifest") is not None
    strategy = v.update_strategy(body.get("update_strategy"), problems)
    delete = v.delete_option(body.get("delete_option"), problems)
    if delete.get("propagationPolicy") == "SelectivelyOrphan":
        problems.add("delete_option.propagationPolicy must be Foreground or Orphan for a single resource")
    if not valid or not isinstance(manifest, dict):
        return Spec(consumer_name=consumer_name, manifests=[], delete_option=delete)
    config = {
        "resourceIdentifier": resource_identifier(manifest),
        "updateStrategy": strategy,
        "feedbackRules": [{"type": "JSONPaths", "jsonPaths": [{"name": "status", "path": ".status"}]}],
    }
    return Spec(consumer_name=consumer_name, manifests=[manifest], delete_option=delete, manifest_configs=[config])


def bundle_spec(body: dict[str, Any], problems: v.Problems, *, consumer_name: str) -> Spec:
    manifests = v.manifests(body.get("manifests"), problems)
    metadata = body.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        problems.add("metadata must be an object")
        metadata = {}
    else:
        v.labels(metadata.get("labels"), problems, field="metadata.labels")
    return Spec(
        consumer_name=consumer_name,
        manifests=manifests,
        delete_option=v.delete_option(body.get("delete_option"), problems),
        manifest_configs=v.manifest_configs(body.get("manifest_configs"), problems),
        metadata={k: metadata[k] for k in ("name", "labels", "annotations") if k in metadata},
    )


@dataclass(frozen=True)
class Created:
    row: ResourceRow
    new: bool
    """False when the create repeated one that had already succeeded (same id, same request)."""


async def _insert(db: databases.Database, new: resources.NewRow) -> ResourceRow:
    async with connection(db) as conn:  # NB: one statement writes the row, its event and the NOTIFY.
        return await resources.insert(conn, new)


async def _insert_batch(db: databases.Database, batch: Sequence[resources.NewRow]) -> Sequence[ResourceRow | None]:
    """Each row inserted, or None when it was not (the caller's single-row path says why).

    NB: a batch that fails as a whole (a consumer deleted meanwhile) sends each row down its single-row path,
    whose answer is the one it would have had alone; a database that is away answers 503 to each, as alone.
    """
    try:
        async with connection(db) as conn:
            return await resources.insert_many(conn, batch)
    except asyncpg.PostgresError:
        return [None] * len(batch)


_CREATES: weakref.WeakKeyDictionary[databases.Database, GroupCommit[resources.NewRow, ResourceRow | None]] = (
    weakref.WeakKeyDictionary()
)


def _creates(db: databases.Database) -> GroupCommit[resources.NewRow, ResourceRow | None]:
    """The group commit of ``db``'s creates (see :mod:`server.store.batching`)."""
    creates = _CREATES.get(db)
    if creates is None:
        ref = weakref.ref(db)  # NB: not ``db`` itself: a value of the map must not keep its key alive

        def single(new: resources.NewRow) -> Awaitable[ResourceRow]:
            return _insert(_alive(ref), new)

        def batch(rows: Sequence[resources.NewRow]) -> Awaitable[Sequence[ResourceRow | None]]:
            return _insert_batch(_alive(ref), rows)

        creates = _CREATES[db] = GroupCommit(single, batch)
    return creates


def _alive(ref: weakref.ref[databases.Database]) -> databases.Database:
    db = ref()
    assert db is not None, "a write on a database nobody holds"
    return db


async def create(
    db: databases.Database,
    *,
    rid: str,
    name: str,
    source: str,
    type: ResourceType,
    spec: Spec,
    actor: str = ANONYMOUS,
) -> Created:
    new = resources.NewRow(rid, name, source, spec.consumer_name, type, spec.payload(rid), actor)
    try:
        # NB: a row a batch did not insert takes the single-row path, for the answer it would have had alone.
        return Created(await _creates(db).write(new) or await _insert(db, new), new=True)
    except asyncpg.ForeignKeyViolationError:
        raise ValidationError(f"consumer_name: consumer {spec.consumer_name!r} does not exist") from None
    except asyncpg.UniqueViolationError:
        pass
    # NB: an identical retry collides on the id, and maybe first on the name (the same name): look at the id.
    async with connection(db) as conn:
        existing = await resources.get(conn, rid)
    if existing is None:
        raise Conflict("a resource with this name already exists")
    wanted = {"name": name, "consumer_name": spec.consumer_name, "source": source, "type": type}
    differs = [k for k, value in wanted.items() if getattr(existing, k) != value]
    # NB: the payload names the consumer too (its namespace): a different consumer is not also a different spec.
    if replace(spec, consumer_name=existing.consumer_name).payload(rid) != existing.payload:
        differs.append("spec" if existing.version == 1 else f"spec (it was updated to version {existing.version})")
    if differs:
        raise Conflict(f"a resource with id {rid} already exists with a different {', '.join(differs)}")
    if existing.deleted_at is not None:
        raise Conflict(f"a resource with id {rid} already exists and is being deleted")
    return Created(existing, new=False)


async def create_single(
    db: databases.Database, body: dict[str, Any], *, source: str, actor: str = ANONYMOUS
) -> Created:
    problems = v.Problems()
    v.check_fields(body, SINGLE_FIELDS, problems)
    rid, name = _identity(body, problems, kind="Resource")
    consumer = _consumer(body, problems)
    if "version" in body:
        v.version(body["version"], problems)
    spec = single_spec(body, problems, consumer_name=consumer)
    problems.raise_if_any()
    return await create(db, rid=rid, name=name, source=source, type="Single", spec=spec, actor=actor)


async def create_bundle(
    db: databases.Database, body: dict[str, Any], *, source: str, actor: str = ANONYMOUS
) -> Created:
    problems = v.Problems()
    v.check_fields(body, BUNDLE_FIELDS, problems)
    rid, name = _identity(body, problems, kind="ResourceBundle")
    consumer = _consumer(body, problems)
    if "version" in body:
        v.version(body["version"], problems)
    spec = bundle_spec(body, problems, consumer_name=consumer)
    problems.raise_if_any()
    return await create(db, rid=rid, name=name, source=source, type="Bundle", spec=spec, actor=actor)


async def update(
    db: databases.Database,
    rid: str,
    *,
    version: int,
    build: Any,
    expect_type: ResourceType | None = None,
    actor: str = ANONYMOUS,
) -> ResourceRow:
    """Replace the spec of ``rid`` with ``build(row)`` (a Spec) under the row lock.

    ``version`` 0 skips the concurrency check. Unchanged specs change nothing (no new version, no event).
    """
    if not _storable(rid):
        raise NotFound(f"Resource with id='{rid}' not found")
    async with transaction(db) as conn:
        row = await resources.get(conn, rid, lock=True)
        if row is None or (expect_type and row.type != expect_type):
            raise NotFound(f"Resource with id='{rid}' not found")
        if row.deleted_at is not None:
            raise Conflict(f"resource {rid} is being deleted")
        if version and version != row.version:
            raise Conflict(f"the resource version is not the latest, the latest version: {row.version}")
        spec: Spec = build(row)
        payload = spec.payload(rid)
        if payload == row.payload:
            return row
        return await resources.update_spec(conn, rid, payload=payload, actor=actor)


def _check_same(row: ResourceRow, body: dict[str, Any], problems: v.Problems) -> None:
    for key, current in (("consumer_name", row.consumer_name), ("name", row.name), ("id", row.id)):
        if key in body and body[key] != current:
            problems.add(f"{key} cannot be changed")


def _update_version(body: dict[str, Any], fields: set[str]) -> int:
    """Check an update body's fields and return its required ``version`` (0 skips the concurrency check)."""
    problems = v.Problems()
    v.check_fields(body, fields, problems)
    if "version" not in body:
        problems.add("version is required: send the version you last read (0 skips the check)")
    ver = v.version(body.get("version", 0), problems)
    problems.raise_if_any()
    return ver


async def patch_single(
    db: databases.Database, rid: str, body: dict[str, Any], *, actor: str = ANONYMOUS
) -> ResourceRow:
    ver = _update_version(body, SINGLE_FIELDS)

    def build(row: ResourceRow) -> Spec:
        p = v.Problems()
        _check_same(row, body, p)
        data = row.payload["data"]
        current: dict[str, Any] = {
            "manifest": data["manifests"][0],
            "update_strategy": data["manifestConfigs"][0].get("updateStrategy") if data["manifestConfigs"] else None,
            "delete_option": data["deleteOption"],
        }
        changes: dict[str, Any] = {k: body[k] for k in ("manifest", "update_strategy", "delete_option") if k in body}
        merged = {**current, **changes}
        spec = single_spec(merged, p, consumer_name=row.consumer_name)
        p.raise_if_any()
        return spec

    return await update(db, rid, version=ver, build=build, expect_type="Single", actor=actor)


async def replace_bundle(
    db: databases.Database, rid: str, body: dict[str, Any], *, actor: str = ANONYMOUS
) -> ResourceRow:
    ver = _update_version(body, BUNDLE_FIELDS)

    def build(row: ResourceRow) -> Spec:
        p = v.Problems()
        _check_same(row, body, p)
        spec = bundle_spec(body, p, consumer_name=row.consumer_name)
        p.raise_if_any()
        return spec

    return await update(db, rid, version=ver, build=build, actor=actor)


async def mark_deleting(
    db: databases.Database, rid: str, *, expect_type: ResourceType | None = None, actor: str = ANONYMOUS
) -> bool:
    """Start the two-phase delete. Returns False when there is no such resource; deleting twice is a no-op."""
    if not _storable(rid):
        return False
    async with transaction(db) as conn:
        row = await resources.get(conn, rid, lock=True)
        if row is None or (expect_type and row.type != expect_type):
            return False
        if row.deleted_at is None:
            await resources.mark_deleting(conn, rid, actor=actor)
        return True


def _storable(rid: str) -> bool:
    """False for an id no row can have: PostgreSQL text refuses NUL (and the query would fail with a 500)."""
    return "\x00" not in rid


async def get(db: databases.Database, rid: str, *, expect_type: ResourceType | None = None) -> ResourceRow:
    if not _storable(rid):
        raise NotFound(f"Resource with id='{rid}' not found")
    async with connection(db) as conn:
        row = await resources.get(conn, rid)
    if row is None or (expect_type and row.type != expect_type):
        raise NotFound(f"Resource with id='{rid}' not found")
    return row
