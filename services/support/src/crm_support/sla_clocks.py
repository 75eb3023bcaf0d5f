"""The ticket_sla_clocks table: every ticket's running deadlines, for the SLA scheduler to scan."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from uuid import UUID

import asyncpg

from crm_support.domain.sla import SlaClock

_LEADER_KEY = zlib.crc32(b"crm-support-sla-scheduler")
_COLUMNS = "ticket_id, customer_id, first_response_due_at, resolution_due_at, breached"


def _clock(row: asyncpg.Record) -> SlaClock:
    return SlaClock(
        row["ticket_id"],
        row["customer_id"],
        row["first_response_due_at"],
        row["resolution_due_at"],
        frozenset(row["breached"]),
    )


class PostgresSlaClocks:
    """Reads and writes ticket_sla_clocks in the support database."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def upsert(self, conn: asyncpg.Connection, clock: SlaClock, version: int) -> None:
        """Record a ticket's clock as of a stream version, inside the caller's transaction."""
        await conn.execute(
            "INSERT INTO ticket_sla_clocks (ticket_id, customer_id, version, first_response_due_at,"
            " resolution_due_at, breached, next_due_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (ticket_id) DO UPDATE SET version = EXCLUDED.version,"
            " first_response_due_at = EXCLUDED.first_response_due_at,"
            " resolution_due_at = EXCLUDED.resolution_due_at, breached = EXCLUDED.breached,"
            " next_due_at = EXCLUDED.next_due_at, updated_at = now()"
            " WHERE ticket_sla_clocks.version < EXCLUDED.version",
            clock.ticket_id,
            clock.customer_id,
            version,
            clock.first_response_due_at,
            clock.resolution_due_at,
            sorted(clock.breached),
            clock.next_due_at,
        )

    async def due(self, now: datetime, limit: int = 500) -> list[SlaClock]:
        """Clocks with a pending deadline at or before `now`, earliest first."""
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM ticket_sla_clocks WHERE next_due_at <= $1 ORDER BY next_due_at LIMIT $2",
            now,
            limit,
        )
        return [_clock(r) for r in rows]

    async def get(self, ticket_id: UUID) -> SlaClock | None:
        """One ticket's clock, if recorded."""
        r = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM ticket_sla_clocks WHERE ticket_id = $1",
            ticket_id,
        )
        return None if r is None else _clock(r)

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
