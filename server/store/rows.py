"""Typed rows as the store returns them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

ResourceType = Literal["Single", "Bundle"]


@dataclass(frozen=True)
class ConsumerRow:
    id: str
    name: str
    labels: dict[str, str] | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: asyncpg.Record) -> ConsumerRow:
        return cls(
            id=r["id"], name=r["name"], labels=r["labels"], created_at=r["created_at"], updated_at=r["updated_at"]
        )


@dataclass(frozen=True)
class ResourceRow:
    id: str
    name: str
    source: str
    consumer_name: str
    type: ResourceType
    version: int
    payload: dict[str, Any]
    status: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None

    @classmethod
    def of(cls, r: asyncpg.Record) -> ResourceRow:
        return cls(
            id=r["id"],
            name=r["name"],
            source=r["source"],
            consumer_name=r["consumer_name"],
            type=r["type"],
            version=r["version"],
            payload=r["payload"],
            status=r["status"],
            created_at=r["created_at"],
            updated_at=r["updated_at"],
            deleted_at=r["deleted_at"],
        )
