"""Pure projection of any CRM event onto its customer's timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from crm_schemas.envelope import EventEnvelope

TIMELINE_DDL = """
CREATE TABLE IF NOT EXISTS timeline_entries (
    seq            bigint GENERATED ALWAYS AS IDENTITY,
    event_id       uuid        PRIMARY KEY,
    customer_id    uuid        NOT NULL,
    service        text        NOT NULL,
    type           text        NOT NULL,
    schema_version integer     NOT NULL,
    stream_id      text        NOT NULL,
    version        integer     NOT NULL,
    occurred_at    timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL,
    actor          jsonb       NOT NULL,
    correlation_id uuid        NOT NULL,
    data           jsonb       NOT NULL,
    prev_hash      text,
    hash           text        NOT NULL
);
CREATE INDEX IF NOT EXISTS timeline_by_customer
    ON timeline_entries (customer_id, occurred_at DESC, event_id DESC);

CREATE OR REPLACE FUNCTION crm_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % rejected', TG_TABLE_NAME, TG_OP USING ERRCODE = 'CRM00';
END $$;
DROP TRIGGER IF EXISTS timeline_append_only ON timeline_entries;
CREATE TRIGGER timeline_append_only BEFORE UPDATE OR DELETE ON timeline_entries
    FOR EACH ROW EXECUTE FUNCTION crm_reject_change();
DROP TRIGGER IF EXISTS timeline_no_truncate ON timeline_entries;
CREATE TRIGGER timeline_no_truncate BEFORE TRUNCATE ON timeline_entries
    FOR EACH STATEMENT EXECUTE FUNCTION crm_reject_change();
"""

TIMELINE_GRANTS = """
REVOKE UPDATE, DELETE, TRUNCATE ON timeline_entries FROM {role};
GRANT SELECT, INSERT ON timeline_entries TO {role};
"""


@dataclass(frozen=True)
class TimelineEntry:
    """One row of a customer's timeline; personal data stays encrypted at rest."""

    event_id: UUID
    customer_id: UUID
    service: str
    type: str
    schema_version: int
    stream_id: str
    version: int
    occurred_at: datetime
    recorded_at: datetime
    actor: dict[str, Any]
    correlation_id: UUID
    data: dict[str, Any]
    prev_hash: str | None
    hash: str


class TimelineProjection:
    """Every event of every service becomes one immutable timeline entry."""

    name = "timeline"

    def project(self, event: EventEnvelope) -> TimelineEntry | None:
        """The entry for an event (all events belong on the timeline)."""
        return TimelineEntry(
            event_id=event.event_id,
            customer_id=event.customer_id,
            service=event.service,
            type=event.type,
            schema_version=event.schema_version,
            stream_id=event.stream_id,
            version=event.version,
            occurred_at=event.occurred_at,
            recorded_at=event.recorded_at,
            actor=event.actor.model_dump(mode="json"),
            correlation_id=event.correlation_id,
            data=event.payload,
            prev_hash=event.prev_hash,
            hash=event.hash,
        )

    async def apply(self, conn: asyncpg.Connection, change: TimelineEntry) -> None:
        """Insert the entry; a late event simply sorts into place by occurred_at."""
        await conn.execute(
            "INSERT INTO timeline_entries (event_id, customer_id, service, type, schema_version, stream_id,"
            " version, occurred_at, recorded_at, actor, correlation_id, data, prev_hash, hash)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14) ON CONFLICT (event_id) DO NOTHING",
            change.event_id,
            change.customer_id,
            change.service,
            change.type,
            change.schema_version,
            change.stream_id,
            change.version,
            change.occurred_at,
            change.recorded_at,
            change.actor,
            change.correlation_id,
            change.data,
            change.prev_hash,
            change.hash,
        )
