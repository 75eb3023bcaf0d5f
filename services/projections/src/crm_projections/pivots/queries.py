"""Pivot reports over the fact tables: one measure by a row dimension and an optional column dimension.

Revenue is an order's pre-tax ``total`` minus what its cancellations and returns reversed, all of it
counted on the order's own date (``order_date``): a return in May of an April order lowers April.
So a period's figure can still move after the period closed, but revenue is never counted in a
month in which nothing was sold, and by-product-category revenue (line amounts minus the returned
line amounts) adds up to the same totals.  Fiscal years follow the customer's ``fiscal_month``
(the month the fiscal year ends, default 3 = March) and are named after the year they start in
(年度: April 2024 – March 2025 is 2024 with fiscal_month 3; with 12 it is the calendar year).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

import asyncpg

from crm_projections.search.filters import CustomerFilter
from crm_projections.search.queries import Sql, filter_sql

Measure = Literal[
    "revenue", "order_count", "deal_count", "deal_amount", "ticket_count", "complaint_count", "average_csat"
]
Dimension = Literal[
    "customer",
    "prefecture",
    "industry",
    "rank",
    "owner",
    "stage",
    "product_category",
    "month",
    "fiscal_year",
    "ticket_category",
]

DEFAULT_FISCAL_MONTH = 3
#: Open stages of the default pipeline, in order (the deals service's DEFAULT_PIPELINE), then the outcomes.
STAGE_ORDER = ("lead", "qualified", "proposal", "negotiation", "won", "lost")

_CUSTOMER_DIMENSIONS = {
    "customer": "c.customer_id::text",
    "prefecture": "c.prefecture",
    "industry": "c.industry",
    "rank": "c.rank",
}


def _calendar(date_sql: str) -> dict[str, str]:
    start = f"(coalesce(c.fiscal_month, {DEFAULT_FISCAL_MONTH}) % 12 + 1)"
    return {
        "month": f"to_char({date_sql}, 'YYYY-MM')",
        "fiscal_year": (
            f"(CASE WHEN extract(month FROM {date_sql}) >= {start}"
            f" THEN extract(year FROM {date_sql}) ELSE extract(year FROM {date_sql}) - 1 END)::int::text"
        ),
    }


@dataclass(frozen=True)
class Source:
    """Where a measure's facts live: FROM clause, date expression, allowed dimensions, aggregate."""

    from_sql: str
    date_sql: str
    dimensions: dict[str, str]
    aggregate: str
    kind: Literal["money", "count", "average"]


_ORDERS = (
    "fact_orders o JOIN fact_customers c ON c.customer_id = o.subject_id"
    " LEFT JOIN fact_customer_totals t ON t.customer_id = c.customer_id"
)
_LINES = (
    "fact_order_lines l JOIN fact_orders o ON o.order_id = l.order_id"
    " JOIN fact_customers c ON c.customer_id = l.subject_id"
    " LEFT JOIN fact_customer_totals t ON t.customer_id = c.customer_id"
)
_DEALS = (
    "fact_deals d JOIN fact_customers c ON c.customer_id = d.subject_id"
    " LEFT JOIN fact_customer_totals t ON t.customer_id = c.customer_id"
)
_TICKETS = (
    "fact_tickets k JOIN fact_customers c ON c.customer_id = k.subject_id"
    " LEFT JOIN fact_customer_totals t ON t.customer_id = c.customer_id"
)
_TICKET_DATE = "(k.opened_at AT TIME ZONE 'Asia/Tokyo')::date"
_DEAL_DIMENSIONS = {"owner": "d.owner", "stage": "d.stage"}
_TICKET_DIMENSIONS = {"ticket_category": "k.category"}


def _source(measure: Measure, by_category: bool) -> Source:
    match measure:
        case "revenue" | "order_count" if by_category:
            aggregate = (
                "sum(l.line_amount - l.reversed)"
                if measure == "revenue"
                else ("count(DISTINCT l.order_id) FILTER (WHERE o.status = 'placed')")
            )
            dims = {**_CUSTOMER_DIMENSIONS, **_calendar("l.order_date"), "product_category": "l.category"}
            return Source(_LINES, "l.order_date", dims, aggregate, "money" if measure == "revenue" else "count")
        case "revenue" | "order_count":
            aggregate = (
                "sum(o.total - o.reversed)" if measure == "revenue" else "count(*) FILTER (WHERE o.status = 'placed')"
            )
            dims = {**_CUSTOMER_DIMENSIONS, **_calendar("o.order_date")}
            return Source(_ORDERS, "o.order_date", dims, aggregate, "money" if measure == "revenue" else "count")
        case "deal_count" | "deal_amount":
            aggregate = "count(*)" if measure == "deal_count" else "sum(d.amount)"
            dims = {**_CUSTOMER_DIMENSIONS, **_calendar("d.opened_on"), **_DEAL_DIMENSIONS}
            return Source(_DEALS, "d.opened_on", dims, aggregate, "count" if measure == "deal_count" else "money")
        case "ticket_count" | "complaint_count" | "average_csat":
            aggregate = {
                "ticket_count": "count(*)",
                "complaint_count": "count(*) FILTER (WHERE k.kind = 'complaint')",
                "average_csat": "avg(k.csat)",
            }[measure]
            dims = {**_CUSTOMER_DIMENSIONS, **_calendar(_TICKET_DATE), **_TICKET_DIMENSIONS}
            kind: Literal["count", "average"] = "average" if measure == "average_csat" else "count"
            return Source(_TICKETS, _TICKET_DATE, dims, aggregate, kind)


class PivotError(ValueError):
    """A measure × dimension combination that makes no sense; names the parameter at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


#: Which dimensions each measure can be broken down by (the rest answer 422).
ALLOWED: dict[str, frozenset[str]] = {
    "revenue": frozenset({"customer", "prefecture", "industry", "rank", "product_category", "month", "fiscal_year"}),
    "order_count": frozenset(
        {"customer", "prefecture", "industry", "rank", "product_category", "month", "fiscal_year"}
    ),
    "deal_count": frozenset({"customer", "prefecture", "industry", "rank", "owner", "stage", "month", "fiscal_year"}),
    "deal_amount": frozenset({"customer", "prefecture", "industry", "rank", "owner", "stage", "month", "fiscal_year"}),
    "ticket_count": frozenset(
        {"customer", "prefecture", "industry", "rank", "month", "fiscal_year", "ticket_category"}
    ),
    "complaint_count": frozenset(
        {"customer", "prefecture", "industry", "rank", "month", "fiscal_year", "ticket_category"}
    ),
    "average_csat": frozenset(
        {"customer", "prefecture", "industry", "rank", "month", "fiscal_year", "ticket_category"}
    ),
}

_CSAT_PLACES = Decimal("0.01")


def _value(kind: str, raw: Any) -> str | int | None:
    if raw is None:
        return None
    if kind == "count":
        return int(raw)
    if kind == "average":
        return str(Decimal(raw).quantize(_CSAT_PLACES, rounding=ROUND_HALF_EVEN))
    return str(raw)


def _key_order(dimension: str, key: str | None) -> tuple[int, Any]:
    if key is None:
        return (2, "")
    if dimension == "stage" and key in STAGE_ORDER:
        return (0, STAGE_ORDER.index(key))
    return (1, key)


class PivotQueries:
    """Pivot reports against the projections database."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def pivot(
        self,
        measure: Measure,
        rows: Dimension,
        columns: Dimension | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        customers: CustomerFilter | None = None,
    ) -> dict[str, Any]:
        """Cells, row and column totals and the grand total (totals recomputed, not summed: averages stay exact)."""
        for field, dimension in (("rows", rows), ("columns", columns)):
            if dimension is not None and dimension not in ALLOWED[measure]:
                raise PivotError(field, f"{measure} cannot be broken down by {dimension}")
        if columns is not None and columns == rows:
            raise PivotError("columns", "columns must differ from rows")
        if date_from and date_to and date_from > date_to:
            raise PivotError("to", "to is before from")
        source = _source(measure, "product_category" in (rows, columns))
        sql = Sql()
        filter_sql(customers or CustomerFilter(), sql)
        sql.clauses.append(f"{source.date_sql} IS NOT NULL")
        if date_from:
            sql.clauses.append(f"{source.date_sql} >= {sql.arg(date_from)}::date")
        if date_to:
            sql.clauses.append(f"{source.date_sql} <= {sql.arg(date_to)}::date")
        row_sql = source.dimensions[rows]
        label = "max(c.name)" if "customer" in (rows, columns) else "NULL::text"
        if columns:
            col_sql = source.dimensions[columns]
            select = f"{row_sql} AS r, {col_sql} AS col, grouping({row_sql}) AS gr, grouping({col_sql}) AS gc"
            sets = f"(({row_sql}, {col_sql}), ({row_sql}), ({col_sql}), ())"
        else:
            select = f"{row_sql} AS r, NULL::text AS col, grouping({row_sql}) AS gr, 1 AS gc"
            sets = f"(({row_sql}), ())"
        query = (
            f"SELECT {select}, {source.aggregate} AS value, {label} AS label"
            f" FROM {source.from_sql} WHERE {sql.where()} GROUP BY GROUPING SETS {sets}"
        )
        records = await self.pool.fetch(query, *sql.args)
        return self._shape(measure, rows, columns, source.kind, records)

    def _shape(
        self, measure: str, rows: str, columns: str | None, kind: str, records: list[asyncpg.Record]
    ) -> dict[str, Any]:
        cells: dict[tuple[str | None, str | None], Any] = {}
        row_totals: dict[str | None, Any] = {}
        col_totals: dict[str | None, Any] = {}
        grand: Any = None
        labels: dict[str, str | None] = {}
        for rec in records:
            value = _value(kind, rec["value"])
            if rec["gr"] == 0 and rec["gc"] == 0:
                cells[(rec["r"], rec["col"])] = value
            elif rec["gr"] == 0:
                row_totals[rec["r"]] = value
            elif rec["gc"] == 0:
                col_totals[rec["col"]] = value
            else:
                grand = value
            if rec["label"] is not None:
                key = rec["r"] if rows == "customer" else rec["col"]
                if key is not None:
                    labels[key] = rec["label"]
        row_keys = sorted(row_totals, key=lambda k: _key_order(rows, k))
        col_keys = sorted(col_totals, key=lambda k: _key_order(columns or "", k)) if columns else []
        if columns:
            matrix = [[cells.get((r, c)) for c in col_keys] for r in row_keys]
        else:
            matrix = [[row_totals[r]] for r in row_keys]
        return {
            "measure": measure,
            "rows_dimension": rows,
            "columns_dimension": columns,
            "rows": row_keys,
            "columns": col_keys,
            "cells": matrix,
            "totals": {
                "rows": [row_totals[r] for r in row_keys],
                "columns": [col_totals[c] for c in col_keys],
                "grand": grand,
            },
            **({"labels": labels} if labels else {}),
        }


def to_csv(report: dict[str, Any]) -> str:
    """The report as CSV: a header of column keys and "total", one line per row key, then the totals line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")

    def cell(value: Any) -> str:
        return "" if value is None else str(value)

    corner = report["rows_dimension"] + (f" \\ {report['columns_dimension']}" if report["columns_dimension"] else "")
    header = (
        [corner, *(cell(c) for c in report["columns"]), "total"] if report["columns"] else [corner, report["measure"]]
    )
    writer.writerow(header)
    for key, values, total in zip(report["rows"], report["cells"], report["totals"]["rows"], strict=True):
        if report["columns"]:
            writer.writerow([cell(key), *(cell(v) for v in values), cell(total)])
        else:
            writer.writerow([cell(key), cell(total)])
    if report["columns"]:
        writer.writerow(["total", *(cell(v) for v in report["totals"]["columns"]), cell(report["totals"]["grand"])])
    else:
        writer.writerow(["total", cell(report["totals"]["grand"])])
    return out.getvalue()
