"""Saved segments: a unique name, the filters that define the members, and who saved it when."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from crm_eventstore.ids import new_id

from crm_projections.search.filters import CustomerFilter, SortKey


class DuplicateSegment(Exception):
    """A segment of that name exists already."""

    def __init__(self, existing_id: UUID) -> None:
        super().__init__(f"a segment of that name exists: {existing_id}")
        self.existing_id = existing_id


def _segment(row: asyncpg.Record) -> dict[str, Any]:
    filters = row["filters"]
    return {
        "segment_id": str(row["segment_id"]),
        "name": row["name"],
        "filters": json.loads(filters) if isinstance(filters, str) else filters,
        "sort": row["sort"],
        "created_at": row["created_at"].isoformat(),
        "created_by": row["created_by"],
    }


def segment_filter(segment: dict[str, Any]) -> CustomerFilter:
    """The filter a stored segment evaluates."""
    return CustomerFilter.model_validate(segment["filters"])


class SegmentStore:
    """Segments in the projections database; members are evaluated at query time, never stored."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(
        self, name: str, filters: CustomerFilter, sort: SortKey, created_by: str, now: datetime
    ) -> dict[str, Any]:
        """Save a segment; DuplicateSegment if the name is taken."""
        row = await self.pool.fetchrow(
            "INSERT INTO segments (segment_id, name, filters, sort, created_at, created_by)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING RETURNING *",
            new_id(),
            name,
            filters.stored(),
            sort,
            now,
            created_by,
        )
        if row is None:
            existing = await self.pool.fetchval("SELECT segment_id FROM segments WHERE name = $1", name)
            raise DuplicateSegment(existing)
        return _segment(row)

    async def all(self) -> list[dict[str, Any]]:
        """Every segment, by name."""
        return [_segment(r) for r in await self.pool.fetch("SELECT * FROM segments ORDER BY name, segment_id")]

    async def get(self, segment_id: UUID) -> dict[str, Any] | None:
        """One segment by id."""
        row = await self.pool.fetchrow("SELECT * FROM segments WHERE segment_id = $1", segment_id)
        return None if row is None else _segment(row)

    async def named(self, name: str) -> dict[str, Any] | None:
        """One segment by its name."""
        row = await self.pool.fetchrow("SELECT * FROM segments WHERE name = $1", name)
        return None if row is None else _segment(row)
