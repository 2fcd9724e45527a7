"""Consumer use cases: each call is one transaction."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import databases

from server.errors import Conflict, Forbidden, NotFound
from server.services import validation as v
from server.store import consumers
from server.store.db import connection, transaction
from server.store.rows import ConsumerRow


def _check_create(body: dict[str, Any]) -> tuple[str, str, dict[str, str] | None]:
    problems = v.Problems()
    v.check_fields(body, {"id", "kind", "href", "name", "labels"}, problems)
    if body.get("id") not in (None, ""):
        problems.add("id must be empty")
    new_id = str(uuid.uuid4())
    # NB: only a missing or empty name defaults to the id; other falsy values (0, false, []) are type errors.
    name = body.get("name")
    if name is None or name == "":
        name = new_id
    if not v.is_dns1123_label(name):
        problems.add(
            f"name {name!r} is not a valid consumer name: it must be a lowercase RFC 1123 label"
            " (at most 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit)"
        )
    if body.get("kind") not in (None, "Consumer"):
        problems.add("kind must be 'Consumer'")
    found = v.labels(body.get("labels"), problems)
    problems.raise_if_any()
    return new_id, str(name), found


async def create(db: databases.Database, body: dict[str, Any]) -> ConsumerRow:
    new_id, name, labels = _check_create(body)
    try:
        async with transaction(db) as conn:
            return await consumers.insert(conn, id=new_id, name=name, labels=labels)
    except asyncpg.UniqueViolationError:
        raise Conflict(f"a consumer named {name!r} already exists") from None


def _not_found(consumer_id: str) -> NotFound:
    return NotFound(f"Consumer with id='{consumer_id}' not found")


async def get(db: databases.Database, consumer_id: str) -> ConsumerRow:
    # Ids are UUIDs we minted: anything else (say a NUL, which PostgreSQL text refuses) cannot exist.
    if not v.is_uuid(consumer_id):
        raise _not_found(consumer_id)
    async with connection(db) as conn:
        row = await consumers.get(conn, consumer_id)
    if row is None:
        raise _not_found(consumer_id)
    return row


async def patch(db: databases.Database, consumer_id: str, body: dict[str, Any]) -> ConsumerRow:
    problems = v.Problems()
    v.check_fields(body, {"labels"}, problems)
    labels = v.labels(body.get("labels"), problems)
    problems.raise_if_any()
    if not v.is_uuid(consumer_id):
        raise _not_found(consumer_id)
    async with transaction(db) as conn:
        row = await consumers.update_labels(conn, consumer_id, labels or None)
    if row is None:
        raise _not_found(consumer_id)
    return row


async def delete(db: databases.Database, consumer_id: str) -> None:
    if not v.is_uuid(consumer_id):
        raise _not_found(consumer_id)
    try:
        async with transaction(db) as conn:
            deleted = await consumers.delete(conn, consumer_id)
    except asyncpg.IntegrityConstraintViolationError:
        # NB: PostgreSQL 15 reports the ON DELETE RESTRICT reference as foreign_key_violation, 18 (the embedded
        # default) as restrict_violation; the row has no other constraint a delete can trip.
        raise Forbidden(
            f"Consumer with id='{consumer_id}' is still referenced by resources;"
            " delete them first (resources being deleted count until their agent confirms)"
        ) from None
    if not deleted:
        raise _not_found(consumer_id)
