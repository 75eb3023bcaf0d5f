"""Customer search over the fact tables: SQL built from a CustomerFilter, keyset pagination by sort key."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from crm_projections.search.filters import CustomerFilter, SortKey
from crm_projections.search.normalise import fold, query_bigrams


class BadCursor(ValueError):
    """A pagination cursor that this API did not issue, or issued for another sort."""


@dataclass
class Sql:
    """WHERE clauses and their positional arguments, built up together."""

    clauses: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)

    def arg(self, value: Any) -> str:
        """A placeholder for one more argument."""
        self.args.append(value)
        return f"${len(self.args)}"

    def where(self) -> str:
        """The clauses joined with AND (TRUE when none)."""
        return " AND ".join(self.clauses) if self.clauses else "TRUE"


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


#: Every search reads `fact_customers c LEFT JOIN fact_customer_totals t`: registered, not merged away.
CUSTOMER_BASE = "c.kind IS NOT NULL AND c.merged_into IS NULL"

# Business dates are Japanese calendar days: a date bound means midnight in Tokyo.
_JST_MIDNIGHT = "({}::date::timestamp AT TIME ZONE 'Asia/Tokyo')"


def filter_sql(f: CustomerFilter, sql: Sql) -> None:
    """Add the clauses of a filter (aliases: c = fact_customers, t = fact_customer_totals)."""
    sql.clauses.append(CUSTOMER_BASE)
    if f.q:
        folded = fold(f.q)
        grams = query_bigrams(folded)
        if grams:
            # The GIN index narrows to names holding every bigram; LIKE checks they are adjacent.
            sql.clauses.append(f"c.search_grams @> {sql.arg(grams)}::text[]")
        if folded:
            sql.clauses.append(f"c.search_text LIKE {sql.arg('%' + _like_escape(folded) + '%')}")
    for column in ("kind", "prefecture", "city", "industry", "rank"):
        values = getattr(f, column)
        if values:
            sql.clauses.append(f"c.{column} = ANY({sql.arg(list(values))}::text[])")
    if f.tag:
        sql.clauses.append(f"c.tags && {sql.arg(list(f.tag))}::text[]")
    if f.consent:
        consents = sql.arg(list(f.consent))
        sql.clauses.append(
            "EXISTS (SELECT 1 FROM fact_consents x WHERE x.customer_id = c.customer_id AND x.granted"
            f" AND (x.channel = ANY({consents}::text[]) OR x.channel || ':' || x.purpose = ANY({consents}::text[])))"
        )
    if f.owner or f.deal_stage:
        deal = ["d.subject_id = c.customer_id"]
        if f.owner:
            deal.append(f"d.owner = ANY({sql.arg(list(f.owner))}::text[])")
        if f.deal_stage:
            deal.append(f"d.stage = ANY({sql.arg(list(f.deal_stage))}::text[])")
        sql.clauses.append("EXISTS (SELECT 1 FROM fact_deals d WHERE " + " AND ".join(deal) + ")")
    if f.has_open_complaint is not None:
        sql.clauses.append("coalesce(t.open_complaints, 0) " + ("> 0" if f.has_open_complaint else "= 0"))
    if f.bought_product or f.bought_category or f.bought_from or f.bought_to:
        line = ["l.subject_id = c.customer_id", "l.line_amount > l.reversed"]
        if f.bought_product:
            line.append(f"l.product_code = ANY({sql.arg(list(f.bought_product))}::text[])")
        if f.bought_category:
            line.append(f"l.category = ANY({sql.arg(list(f.bought_category))}::text[])")
        if f.bought_from:
            line.append(f"l.order_date >= {sql.arg(f.bought_from)}::date")
        if f.bought_to:
            line.append(f"l.order_date <= {sql.arg(f.bought_to)}::date")
        sql.clauses.append("EXISTS (SELECT 1 FROM fact_order_lines l WHERE " + " AND ".join(line) + ")")
    if f.no_purchase_since:
        sql.clauses.append(
            f"(t.last_purchase_date IS NULL OR t.last_purchase_date < {sql.arg(f.no_purchase_since)}::date)"
        )
    if f.min_amount is not None:
        sql.clauses.append(f"coalesce(t.revenue, 0) >= {sql.arg(f.min_amount)}::numeric")
    if f.max_amount is not None:
        sql.clauses.append(f"coalesce(t.revenue, 0) <= {sql.arg(f.max_amount)}::numeric")
    if f.last_contact_before:
        bound = _JST_MIDNIGHT.format(sql.arg(f.last_contact_before))
        sql.clauses.append(f"(t.last_contact_at IS NULL OR t.last_contact_at < {bound})")


# Sort key expression, its SQL type for the cursor value, and how to read the value back.
_SORTS: dict[str, tuple[str, str]] = {
    "name": ('c.sort_name COLLATE "C"', "text"),
    "revenue": ("coalesce(t.revenue, 0)", "numeric"),
    # Never purchased sorts first (-infinity: asyncpg maps it to and from date.min, so cursors round-trip).
    "last_purchase": ("coalesce(t.last_purchase_date, '-infinity'::date)", "date"),
    "registered": ("c.registered_at", "timestamptz"),
}


def encode_cursor(sort: str, key: Any, customer_id: UUID) -> str:
    """An opaque cursor pointing just after a row of a given sort."""
    text = key.isoformat() if isinstance(key, date | datetime) else str(key)
    raw = json.dumps([sort, text, str(customer_id)], ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[str, UUID]:
    """The (sort key as text, customer id) a cursor points after; BadCursor if not ours or for another sort."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, key, customer_id = json.loads(raw)
        parsed = UUID(customer_id)
    except (ValueError, TypeError) as exc:
        raise BadCursor("cursor is not valid") from exc
    if cursor_sort != sort or not isinstance(key, str):
        raise BadCursor("cursor belongs to another sort order")
    return key, parsed


def _parse_key(text: str, sql_type: str) -> Any:
    try:
        match sql_type:
            case "numeric":
                return Decimal(text)
            case "date":
                return date.fromisoformat(text)
            case "timestamptz":
                return datetime.fromisoformat(text)
            case _:
                return text
    except (ValueError, ArithmeticError) as exc:
        raise BadCursor("cursor is not valid") from exc


def _money(value: Decimal | None) -> str:
    return str(value if value is not None else Decimal(0))


def customer_item(row: asyncpg.Record) -> dict[str, Any]:
    """One search result as JSON-ready values (money as decimal strings)."""
    return {
        "customer_id": str(row["customer_id"]),
        "kind": row["kind"],
        "name": row["name"],
        "name_kana": row["name_kana"],
        "prefecture": row["prefecture"],
        "city": row["city"],
        "industry": row["industry"],
        "rank": row["rank"],
        "tags": list(row["tags"]),
        "registered_at": row["registered_at"].isoformat() if row["registered_at"] else None,
        "revenue": _money(row["revenue"]),
        "order_count": row["order_count"],
        "last_purchase_date": row["last_purchase_date"].isoformat() if row["last_purchase_date"] else None,
        "last_contact_at": row["last_contact_at"].isoformat() if row["last_contact_at"] else None,
        "open_complaints": row["open_complaints"],
    }


SELECT_CUSTOMERS = """
SELECT c.customer_id, c.kind, c.name, c.name_kana, c.prefecture, c.city, c.industry, c.rank, c.tags,
       c.registered_at, coalesce(t.revenue, 0) AS revenue, coalesce(t.order_count, 0) AS order_count,
       t.last_purchase_date, t.last_contact_at, coalesce(t.open_complaints, 0) AS open_complaints, {key} AS sort_key
FROM fact_customers c LEFT JOIN fact_customer_totals t ON t.customer_id = c.customer_id
"""


class CustomerSearchQueries:
    """Search and segment member listings against the projections database."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def page(
        self, f: CustomerFilter, sort: SortKey = "name", cursor: str | None = None, limit: int = 50
    ) -> dict[str, Any]:
        """One page of matching customers with next_cursor when more remain."""
        descending = sort.startswith("-")
        key, sql_type = _SORTS[sort.removeprefix("-")]
        sql = Sql()
        filter_sql(f, sql)
        if cursor:
            after, after_id = decode_cursor(cursor, sort)
            op = "<" if descending else ">"
            value = sql.arg(_parse_key(after, sql_type))
            sql.clauses.append(f"({key}, c.customer_id) {op} ({value}::{sql_type}, {sql.arg(after_id)}::uuid)")
        direction = "DESC" if descending else "ASC"
        limit_arg = sql.arg(limit + 1)
        rows = await self.pool.fetch(
            SELECT_CUSTOMERS.format(key=key)
            + f" WHERE {sql.where()} ORDER BY {key} {direction}, c.customer_id {direction} LIMIT {limit_arg}",
            *sql.args,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(sort, rows[-1]["sort_key"], rows[-1]["customer_id"]) if more else None
        return {"items": [customer_item(r) for r in rows], "next_cursor": next_cursor}

    async def iterate(
        self, f: CustomerFilter, sort: SortKey = "name", batch: int = 500
    ) -> AsyncIterator[dict[str, Any]]:
        """Every matching customer, page by page (for exports)."""
        cursor: str | None = None
        while True:
            page = await self.page(f, sort, cursor, batch)
            for item in page["items"]:
                yield item
            cursor = page["next_cursor"]
            if cursor is None:
                return
