"""Applying fact changes to PostgreSQL: upserts that tolerate any arrival order across services."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg
from crm_eventstore.errors import KeyDestroyed
from crm_eventstore.keyring import Keyring
from crm_eventstore.projection import DeadLetterSink, ProjectionRunner
from crm_schemas.envelope import EventEnvelope

from crm_projections.facts.project import (
    PROFILE_MEMBERS,
    ConsentChanged,
    FactChange,
    FactUpsert,
    Forgotten,
    MergeChanged,
    OrderPlacedFact,
    OrderReversal,
    ProfileChanged,
    project,
)
from crm_projections.search.normalise import bigrams, fold, search_text

_KEY_COLUMN = {"fact_deals": "deal_id", "fact_tickets": "ticket_id", "fact_activities": "activity_id"}
_SUBJECT_TABLES = ("fact_orders", "fact_order_lines", "fact_deals", "fact_tickets", "fact_activities")
_PERSONAL = frozenset({"name", "name_kana", "address"})


async def _lock(conn: asyncpg.Connection, *customer_ids: UUID) -> None:
    # Facts of one customer come from three services, possibly applied by consumers of different
    # partitions at the same time; the totals are recomputed from the facts, so two concurrent
    # transactions must not each recompute without seeing the other's rows. Sorted: no deadlocks.
    for cid in sorted(set(customer_ids)):
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7242))", str(cid))


async def _subject(conn: asyncpg.Connection, customer_id: UUID) -> UUID:
    survivor = await conn.fetchval("SELECT merged_into FROM fact_customers WHERE customer_id = $1", customer_id)
    return survivor if isinstance(survivor, UUID) else customer_id


async def recompute_totals(conn: asyncpg.Connection, subject_id: UUID) -> None:
    """Rebuild one customer's search figures from its facts (and those of customers merged into it)."""
    await recompute_totals_of(conn, [subject_id])


async def recompute_totals_of(conn: asyncpg.Connection, subject_ids: Sequence[UUID]) -> None:
    """Rebuild several customers' search figures from their facts, in one statement."""
    await conn.execute(
        """
        INSERT INTO fact_customer_totals AS t (customer_id, revenue, order_count, first_purchase_date,
            last_purchase_date, last_contact_at, open_complaints, open_tickets)
        SELECT s.id,
            (SELECT coalesce(sum(total - reversed), 0) FROM fact_orders
                WHERE subject_id = s.id AND order_date IS NOT NULL),
            (SELECT count(*) FROM fact_orders WHERE subject_id = s.id AND order_date IS NOT NULL AND status = 'placed'),
            (SELECT min(order_date) FROM fact_orders WHERE subject_id = s.id AND status = 'placed'),
            (SELECT max(order_date) FROM fact_orders WHERE subject_id = s.id AND status = 'placed'),
            (SELECT max(occurred_at) FROM fact_activities WHERE subject_id = s.id),
            (SELECT count(*) FROM fact_tickets WHERE subject_id = s.id AND kind = 'complaint'
                AND coalesce(status, 'new') NOT IN ('resolved', 'closed')),
            (SELECT count(*) FROM fact_tickets WHERE subject_id = s.id
                AND coalesce(status, 'new') NOT IN ('resolved', 'closed'))
        FROM unnest($1::uuid[]) AS s(id)
        ON CONFLICT (customer_id) DO UPDATE SET revenue = EXCLUDED.revenue, order_count = EXCLUDED.order_count,
            first_purchase_date = EXCLUDED.first_purchase_date, last_purchase_date = EXCLUDED.last_purchase_date,
            last_contact_at = EXCLUDED.last_contact_at, open_complaints = EXCLUDED.open_complaints,
            open_tickets = EXCLUDED.open_tickets
        """,
        list(subject_ids),
    )


async def forget_customer(conn: asyncpg.Connection, customer_id: UUID) -> None:
    """Erasure: blank the plaintext personal data kept for search; later events cannot bring it back."""
    await conn.execute(
        "INSERT INTO fact_customers (customer_id, erased) VALUES ($1, true) ON CONFLICT (customer_id) DO UPDATE"
        " SET name = NULL, name_kana = NULL, prefecture = NULL, city = NULL, search_text = '',"
        " search_grams = '{}', sort_name = '', erased = true, updated_at = now()",
        customer_id,
    )


def _profile_columns(values: dict[str, Any]) -> dict[str, Any]:
    columns = {k: v for k, v in values.items() if k in PROFILE_MEMBERS and k != "address"}
    if "address" in values:
        address = values["address"] if isinstance(values["address"], dict) else {}
        columns["prefecture"] = address.get("prefecture")
        columns["city"] = address.get("city")
    return columns


class FactsProjection:
    """Every event that feeds a search filter, a pivot measure or the pipeline becomes fact-table changes."""

    name = "facts"

    def __init__(self, keyring: Keyring, *, rebuilding: bool = False) -> None:
        self.keyring = keyring
        # A rebuild writes alone into its shadow copy: no advisory locks (the live consumer takes them on the
        # same customers, and a batch holding hundreds of them could deadlock with it), and each customer's
        # totals are recomputed once per batch (`settle_totals`) instead of after every change; the writer being
        # alone, the subject a customer counts for is looked up once (merges update it here).
        self.rebuilding = rebuilding
        self._pending_totals: dict[UUID, bool] = {}  # subject -> recompute (True) or drop (False), last wins
        self._subjects: dict[UUID, UUID] = {}  # while rebuilding: customer -> subject, kept by _merge

    async def _subject_of(self, conn: asyncpg.Connection, customer_id: UUID) -> UUID:
        if not self.rebuilding:
            return await _subject(conn, customer_id)
        known = self._subjects.get(customer_id)
        if known is None:
            known = self._subjects[customer_id] = await _subject(conn, customer_id)
        return known

    async def _serialise(self, conn: asyncpg.Connection, *customer_ids: UUID) -> None:
        if not self.rebuilding:
            await _lock(conn, *customer_ids)

    async def _totals(self, conn: asyncpg.Connection, subject_id: UUID) -> None:
        if self.rebuilding:
            self._pending_totals[subject_id] = True
        else:
            await recompute_totals(conn, subject_id)

    async def _drop_totals(self, conn: asyncpg.Connection, subject_id: UUID) -> None:
        if self.rebuilding:
            self._pending_totals[subject_id] = False
        else:
            await conn.execute("DELETE FROM fact_customer_totals WHERE customer_id = $1", subject_id)

    async def settle_totals(self, conn: asyncpg.Connection) -> int:
        """Apply the totals deferred while rebuilding (set-based); returns the customers touched."""
        pending, self._pending_totals = self._pending_totals, {}
        dropped = [s for s, keep in pending.items() if not keep]
        kept = [s for s, keep in pending.items() if keep]
        if dropped:
            await conn.execute("DELETE FROM fact_customer_totals WHERE customer_id = ANY($1::uuid[])", dropped)
        if kept:
            await recompute_totals_of(conn, kept)
        return len(pending)

    def project(self, event: EventEnvelope) -> FactChange | None:
        """The change an event makes (pure; see facts.project)."""
        return project(event)

    async def forget(self, conn: asyncpg.Connection, customer_id: UUID) -> None:
        """Blank the customer's plaintext personal data (the erasure hook)."""
        await forget_customer(conn, customer_id)

    async def apply(self, conn: asyncpg.Connection, change: FactChange) -> None:
        """Apply one change inside the runtime's transaction."""
        match change:
            case ProfileChanged():
                await self._serialise(conn, change.customer_id)
                await self._profile(conn, change)
            case ConsentChanged():
                await conn.execute(
                    "INSERT INTO fact_consents AS c (customer_id, channel, purpose, granted, changed_at)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (customer_id, channel, purpose) DO UPDATE"
                    " SET granted = EXCLUDED.granted, changed_at = EXCLUDED.changed_at"
                    " WHERE c.changed_at <= EXCLUDED.changed_at",
                    change.customer_id,
                    change.channel,
                    change.purpose,
                    change.granted,
                    change.at,
                )
            case MergeChanged():
                await self._merge(conn, change)
            case Forgotten():
                await forget_customer(conn, change.customer_id)
            case OrderPlacedFact():
                await self._order(conn, change)
            case OrderReversal():
                await self._reversal(conn, change)
            case FactUpsert():
                await self._upsert(conn, change)

    async def _profile(self, conn: asyncpg.Connection, change: ProfileChanged) -> None:
        row = await conn.fetchrow(
            "SELECT name, name_kana, tags, erased FROM fact_customers WHERE customer_id = $1", change.customer_id
        )
        erased = bool(row and row["erased"])
        values: dict[str, Any] = dict(change.plain)
        opened: dict[str, Any] | None
        try:
            opened = await self.keyring.decrypt_fields(change.customer_id, change.event_id, change.sealed)
        except KeyDestroyed:
            opened, erased = None, True
        if opened is not None:
            if change.nested is not None:
                inner = opened.get(change.nested)
                values.update(dict((inner if isinstance(inner, dict) else {}).items()))
            else:
                values.update(opened)
        if erased:
            values = {k: v for k, v in values.items() if k not in _PERSONAL}
        columns = _profile_columns(values)
        columns["erased"] = erased
        if change.registered_at is not None:
            columns["registered_at"] = change.registered_at
        if "name" in columns or "name_kana" in columns:
            name = columns.get("name", row["name"] if row else None)
            kana = columns.get("name_kana", row["name_kana"] if row else None)
            text = search_text(name, kana)
            columns["search_text"] = text
            columns["search_grams"] = bigrams(text)
            columns["sort_name"] = fold(kana or "") or fold(name or "")
        if change.add_tags or change.remove_tags:
            tags = set(row["tags"] if row else ()) | set(change.add_tags)
            columns["tags"] = sorted(tags - set(change.remove_tags))
        names = list(columns)
        placeholders = ", ".join(f"${i + 2}" for i in range(len(names)))
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names)
        await conn.execute(
            f"INSERT INTO fact_customers (customer_id, {', '.join(names)}) VALUES ($1, {placeholders})"
            f" ON CONFLICT (customer_id) DO UPDATE SET {updates}, updated_at = now()",
            change.customer_id,
            *columns.values(),
        )

    async def _merge(self, conn: asyncpg.Connection, change: MergeChanged) -> None:
        other = change.survivor_id or change.previous_survivor_id
        await self._serialise(conn, change.customer_id, *([other] if other else []))
        await conn.execute(
            "INSERT INTO fact_customers (customer_id, merged_into) VALUES ($1, $2)"
            " ON CONFLICT (customer_id) DO UPDATE SET merged_into = EXCLUDED.merged_into, updated_at = now()",
            change.customer_id,
            change.survivor_id,
        )
        subject = change.survivor_id or change.customer_id
        self._subjects[change.customer_id] = subject
        for table in _SUBJECT_TABLES:
            await conn.execute(
                f"UPDATE {table} SET subject_id = $2 WHERE customer_id = $1", change.customer_id, subject
            )
        if change.survivor_id is not None:
            await self._drop_totals(conn, change.customer_id)
        else:
            await self._totals(conn, change.customer_id)
        if other is not None:
            await self._totals(conn, other)

    async def _order(self, conn: asyncpg.Connection, change: OrderPlacedFact) -> None:
        await self._serialise(conn, change.customer_id)
        subject = await self._subject_of(conn, change.customer_id)
        await conn.execute(
            "INSERT INTO fact_orders (order_id, customer_id, subject_id, order_date, currency, total, deal_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (order_id) DO UPDATE SET order_date = EXCLUDED.order_date,"
            " currency = EXCLUDED.currency, total = EXCLUDED.total, deal_id = EXCLUDED.deal_id",
            change.order_id,
            change.customer_id,
            subject,
            change.order_date,
            change.currency,
            change.total,
            change.deal_id,
        )
        await conn.executemany(
            "INSERT INTO fact_order_lines (order_id, line_no, customer_id, subject_id, order_date, product_code,"
            " product_name, category, unit_price, quantity, line_amount)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (order_id, line_no) DO NOTHING",
            [
                (
                    change.order_id,
                    line.line_no,
                    change.customer_id,
                    subject,
                    change.order_date,
                    line.product_code,
                    line.product_name,
                    line.category,
                    line.unit_price,
                    line.quantity,
                    line.line_amount,
                )
                for line in change.lines
            ],
        )
        await self._settle_order(conn, change.order_id)
        await self._totals(conn, subject)

    async def _reversal(self, conn: asyncpg.Connection, change: OrderReversal) -> None:
        await self._serialise(conn, change.customer_id)
        subject = await self._subject_of(conn, change.customer_id)
        await conn.execute(
            "INSERT INTO fact_orders (order_id, customer_id, subject_id) VALUES ($1, $2, $3)"
            " ON CONFLICT (order_id) DO NOTHING",
            change.order_id,
            change.customer_id,
            subject,
        )
        rows = [(0, change.amount), *change.lines]
        await conn.executemany(
            "INSERT INTO fact_order_reversals (event_id, line_no, order_id, kind, full_order, amount)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            [(change.event_id, no, change.order_id, change.kind, change.full, amount) for no, amount in rows],
        )
        await self._settle_order(conn, change.order_id)
        await self._totals(conn, subject)

    async def _settle_order(self, conn: asyncpg.Connection, order_id: UUID) -> None:
        """Recompute an order's reversed amount and status, and its lines' reversed amounts, from the reversals."""
        await conn.execute(
            """
            UPDATE fact_orders o SET
                reversed = coalesce((SELECT sum(amount) FROM fact_order_reversals r
                                     WHERE r.order_id = o.order_id AND r.line_no = 0), 0),
                status = CASE
                    WHEN EXISTS (SELECT 1 FROM fact_order_reversals r
                                 WHERE r.order_id = o.order_id AND r.kind = 'cancelled') THEN 'cancelled'
                    WHEN EXISTS (SELECT 1 FROM fact_order_reversals r
                                 WHERE r.order_id = o.order_id AND r.full_order) THEN 'returned'
                    ELSE 'placed' END
            WHERE o.order_id = $1
            """,
            order_id,
        )
        # A cancellation reverses whatever was not yet returned, i.e. every line in full.
        await conn.execute(
            """
            UPDATE fact_order_lines l SET reversed = CASE
                WHEN o.status IN ('cancelled', 'returned') THEN l.line_amount
                ELSE coalesce((SELECT sum(amount) FROM fact_order_reversals r
                               WHERE r.order_id = l.order_id AND r.line_no = l.line_no), 0) END
            FROM fact_orders o WHERE o.order_id = l.order_id AND l.order_id = $1
            """,
            order_id,
        )

    async def _upsert(self, conn: asyncpg.Connection, change: FactUpsert) -> None:
        await self._serialise(conn, change.customer_id)
        subject = await self._subject_of(conn, change.customer_id)
        key = _KEY_COLUMN[change.table]
        names = list(change.values)
        columns = ", ".join([key, "customer_id", "subject_id", *names])
        placeholders = ", ".join(f"${i + 1}" for i in range(3 + len(names)))
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names) or "subject_id = EXCLUDED.subject_id"
        await conn.execute(
            f"INSERT INTO {change.table} ({columns}) VALUES ({placeholders}) ON CONFLICT ({key}) DO UPDATE SET {updates}",
            change.key,
            change.customer_id,
            subject,
            *change.values.values(),
        )
        if change.table != "fact_deals":
            await self._totals(conn, subject)


def facts_runner(
    pool: asyncpg.Pool, keyring: Keyring, deadletter: DeadLetterSink, max_attempts: int = 5
) -> ProjectionRunner[FactChange]:
    """The runtime applying the facts projection (dedupe, position, dead-letter) on the projections database."""
    return ProjectionRunner(pool, FactsProjection(keyring), deadletter, max_attempts=max_attempts)


class FactsStore:
    """The fact tables as the privacy side sees them: erasure of a customer's plaintext."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def forget(self, customer_id: UUID) -> None:
        """Blank the customer's name, reading and address kept for search (crypto-shredding's read-side hook)."""
        async with self.pool.acquire() as conn:
            await forget_customer(conn, customer_id)
