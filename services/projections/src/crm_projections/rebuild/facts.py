"""Rebuilding the fact tables (search, segments, pivots, pipeline) beside the serving copy, then swapping.

Unlike the timeline, a fact row is not a copy of an event: every event is decoded, projected with the
live ``FactsProjection`` (the same ``project`` and the same SQL, personal fields decrypted with the
keyring — a destroyed key leaves the customer blank, as live) and applied into the shadow schema through
its search path. Many changes share one transaction; the per-customer totals are recomputed once per
batch for the customers it touched, not after every change, and the rebuild takes no advisory locks (it
is the shadow copy's only writer, and holding a batch's worth of them could deadlock the live consumer).

The live consumer dedupes by event id; the replay does the same against its own table (`rebuild_seen`),
since Kafka may hold an event twice. Completeness across the swap: under the table locks the replay reads
its source to the end — every event the live consumer applied came from those topics, or was committed in
those event stores before it was published — so the new copy holds everything the old one did. After the
swap the consumer goes on from its own position; re-applying, in order, events the rebuild already applied
converges to the same rows (every change is an upsert of what the event says, reversals and consents are
keyed or guarded by time).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

import asyncpg
from crm_eventstore.keyring import Keyring
from crm_schemas.envelope import EventEnvelope

from crm_projections.facts.schema import FACTS_DDL, FACTS_GRANTS
from crm_projections.facts.store import FactsProjection
from crm_projections.rebuild.replay import Batch, ReplaySource, ShadowRebuild, ident

#: The tables of the facts read model (saved segments are not derived from events: they stay put).
FACT_TABLES = (
    "fact_customers",
    "fact_consents",
    "fact_orders",
    "fact_order_lines",
    "fact_order_reversals",
    "fact_deals",
    "fact_tickets",
    "fact_activities",
    "fact_customer_totals",
)


class FactsRebuild(ShadowRebuild):
    """Rebuild of the fact tables into schema `rebuild_facts`, swapped in atomically."""

    projection = "facts"
    tables = FACT_TABLES
    grants = FACTS_GRANTS

    def __init__(
        self,
        owner_url: str,
        role: str,
        keyring: Keyring,
        *,
        batch: int = 2000,
        shadow_schema: str = "rebuild_facts",
        retired_schema: str = "retired_facts",
        before_swap: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(
            owner_url,
            role,
            batch=batch,
            shadow_schema=shadow_schema,
            retired_schema=retired_schema,
            before_swap=before_swap,
        )
        self.keyring = keyring

    async def _create_tables(self, conn: asyncpg.Connection) -> None:
        await conn.execute(FACTS_DDL)
        await conn.execute("DROP TABLE segments")  # created by FACTS_DDL in the shadow schema; not a fact
        await conn.execute("CREATE TABLE rebuild_seen (event_id uuid PRIMARY KEY)")

    async def _open(self, conn: asyncpg.Connection) -> None:
        # The store's SQL names its tables unqualified: on this connection they resolve to the shadow copy.
        await conn.execute(f"SET search_path = {ident(self.shadow)}, public")

    def _read(self, source: ReplaySource, positions: Mapping[str, str]) -> AsyncIterator[Batch]:
        return source.read(positions, self.batch, envelopes=True)

    async def _apply(self, conn: asyncpg.Connection, batch: Batch) -> int:
        envelopes = await self._unseen(conn, batch.envelopes)
        facts = FactsProjection(self.keyring, rebuilding=True)
        for envelope in envelopes:
            change = facts.project(envelope)
            if change is not None:
                await facts.apply(conn, change)
        await facts.settle_totals(conn)
        return len(batch.envelopes)

    async def _unseen(self, conn: asyncpg.Connection, envelopes: Sequence[EventEnvelope]) -> list[EventEnvelope]:
        """The batch without events already applied (a topic may hold an event twice), first copy kept."""
        if not envelopes:
            return []
        fresh = {
            r["event_id"]
            for r in await conn.fetch(
                f"INSERT INTO {ident(self.shadow)}.rebuild_seen SELECT unnest($1::uuid[])"
                " ON CONFLICT DO NOTHING RETURNING event_id",
                [e.event_id for e in envelopes],
            )
        }
        out = []
        for envelope in envelopes:
            if envelope.event_id in fresh:
                fresh.discard(envelope.event_id)
                out.append(envelope)
        return out

    async def _serving(self, conn: asyncpg.Connection) -> int:
        return int(await conn.fetchval("SELECT count(*) FROM public.fact_customers"))
