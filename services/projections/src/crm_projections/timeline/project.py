"""Pure projection of any CRM event onto its customer's timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from crm_schemas.envelope import EventEnvelope

#: The guard every append-only read-model table shares (always in public, whatever the search_path).
REJECT_CHANGE_FUNCTION = """
CREATE OR REPLACE FUNCTION public.crm_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % rejected', TG_TABLE_NAME, TG_OP USING ERRCODE = 'CRM00';
END $$;
"""

#: The timeline's tables, unqualified: they land in the first schema of the search_path, which is
#: how a rebuild creates a fresh copy beside the serving one (see crm_projections.rebuild).
TIMELINE_TABLES_DDL = """
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
DROP TRIGGER IF EXISTS timeline_append_only ON timeline_entries;
CREATE TRIGGER timeline_append_only BEFORE UPDATE OR DELETE ON timeline_entries
    FOR EACH ROW EXECUTE FUNCTION public.crm_reject_change();
DROP TRIGGER IF EXISTS timeline_no_truncate ON timeline_entries;
CREATE TRIGGER timeline_no_truncate BEFORE TRUNCATE ON timeline_entries
    FOR EACH STATEMENT EXECUTE FUNCTION public.crm_reject_change();

-- Which customer is merged into which, as an append-only log ordered by the absorbed customer's
-- stream version: a merge or unmerge adds a row, no timeline entry is ever rewritten.
CREATE TABLE IF NOT EXISTS customer_merges (
    event_id    uuid        PRIMARY KEY,
    absorbed_id uuid        NOT NULL,
    survivor_id uuid        NOT NULL,
    merged      boolean     NOT NULL,
    version     integer     NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS customer_merges_by_absorbed ON customer_merges (absorbed_id, version DESC);
CREATE INDEX IF NOT EXISTS customer_merges_by_survivor ON customer_merges (survivor_id);
DROP TRIGGER IF EXISTS customer_merges_append_only ON customer_merges;
CREATE TRIGGER customer_merges_append_only BEFORE UPDATE OR DELETE ON customer_merges
    FOR EACH ROW EXECUTE FUNCTION public.crm_reject_change();
DROP TRIGGER IF EXISTS customer_merges_no_truncate ON customer_merges;
CREATE TRIGGER customer_merges_no_truncate BEFORE TRUNCATE ON customer_merges
    FOR EACH STATEMENT EXECUTE FUNCTION public.crm_reject_change();
"""

#: The tables a timeline rebuild replaces together.
TIMELINE_TABLES = ("timeline_entries", "customer_merges")

TIMELINE_DDL = REJECT_CHANGE_FUNCTION + TIMELINE_TABLES_DDL

TIMELINE_GRANTS = """
REVOKE UPDATE, DELETE, TRUNCATE ON timeline_entries, customer_merges FROM {role};
GRANT SELECT, INSERT ON timeline_entries, customer_merges TO {role};
"""

MERGE_TYPES = frozenset({"contacts.CustomerMergedInto", "contacts.CustomerUnmergedFrom"})


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
        """Insert the entry (a late event simply sorts into place by occurred_at) and any merge link."""
        if change.type in MERGE_TYPES:
            await conn.execute(
                "INSERT INTO customer_merges (event_id, absorbed_id, survivor_id, merged, version, occurred_at,"
                " recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
                *merge_row(change),
            )
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


def merge_row(entry: TimelineEntry) -> tuple[Any, ...]:
    """The customer_merges row of a CustomerMergedInto / CustomerUnmergedFrom entry."""
    return (
        entry.event_id,
        entry.customer_id,
        UUID(str(entry.data["survivor_id"])),
        entry.type == "contacts.CustomerMergedInto",
        entry.version,
        entry.occurred_at,
        entry.recorded_at,
    )
