"""The deal_deadlines table: contract end dates and invoice due dates, for the scheduler to scan."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from uuid import UUID

import asyncpg

from crm_deals.app.aggregates import Deadline, DeadlineKind

_LEADER_KEY = zlib.crc32(b"crm-deals-scheduler")


def _deadline(row: asyncpg.Record) -> Deadline:
    return Deadline(row["kind"], row["aggregate_id"], row["customer_id"], row["due_on"])


class PostgresDeadlines:
    """Reads and writes deal_deadlines in the deals database."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def upsert(self, conn: asyncpg.Connection, deadline: Deadline, version: int) -> None:
        """Record an aggregate's deadline as of a stream version, inside the caller's transaction."""
        await conn.execute(
            "INSERT INTO deal_deadlines (kind, aggregate_id, customer_id, version, due_on) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (kind, aggregate_id) DO UPDATE SET version = EXCLUDED.version, due_on = EXCLUDED.due_on,"
            " updated_at = now() WHERE deal_deadlines.version < EXCLUDED.version",
            deadline.kind,
            deadline.aggregate_id,
            deadline.customer_id,
            version,
            deadline.due_on,
        )

    async def passed(self, today: date, limit: int = 500) -> list[Deadline]:
        """Deadlines whose date lies before `today`, earliest first."""
        rows = await self.pool.fetch(
            "SELECT kind, aggregate_id, customer_id, due_on FROM deal_deadlines"
            " WHERE due_on < $1 ORDER BY due_on, aggregate_id LIMIT $2",
            today,
            limit,
        )
        return [_deadline(r) for r in rows]

    async def get(self, kind: DeadlineKind, aggregate_id: UUID) -> Deadline | None:
        """One aggregate's deadline, if recorded."""
        row = await self.pool.fetchrow(
            "SELECT kind, aggregate_id, customer_id, due_on FROM deal_deadlines WHERE kind = $1 AND aggregate_id = $2",
            kind,
            aggregate_id,
        )
        return None if row is None else _deadline(row)

    @asynccontextmanager
    async def leadership(self) -> AsyncIterator[bool]:
        """True inside if this process holds the scheduler lock; other replicas get False and skip the tick."""
        async with self.pool.acquire() as conn:
            leading = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LEADER_KEY))
            try:
                yield leading
            finally:
                if leading:
                    await conn.execute("SELECT pg_advisory_unlock($1)", _LEADER_KEY)
