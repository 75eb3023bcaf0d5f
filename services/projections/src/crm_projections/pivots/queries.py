"""Pivot reports over the fact tables: one measure by a row dimension and an optional column dimension.

Revenue is an order's pre-tax ``total`` minus what its cancellations and returns reversed, all of it
counted on the order's own date (``order_date``): a return in May of an April order lowers April.
So a period's figure can still move after the period closed, but revenue is never counted in a
month in which nothing was sold, and by-product-category revenue (line amounts minus the returned
line amounts) adds up to the same totals.  Fiscal years follow the customer's ``fiscal_month``
(the month the fiscal year ends, default 3 = March) and are named, like the customer 360's
``fiscal_year_amounts``, by the calendar year they end in: with fiscal_month 3, "2025" is
2024-04-01 – 2025-03-31 (2025年3月期); with 12 it is the calendar year.

How it is computed: one ``GROUP BY`` returns additive partials per cell (sums, counts, and for
averages sum and count), months as ``date_trunc`` keys and fiscal years as (month, fiscal month)
keys; the labels, the cells and the row, column and grand totals are folded from those partials in
Python with Decimal, so totals are exact (an average total is Σscore / Σcount, never an average of
averages).  The one non-additive case, orders counted by product category (an order may hold
several categories), gets its totals from distinct counts in SQL.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

import asyncpg

from crm_projections.search.filters import CustomerFilter
from crm_projections.search.queries import Sql, filter_sql
from crm_projections.search.scope import RecordScope

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

_CUSTOMER_DIMENSIONS = frozenset({"customer", "prefecture", "industry", "rank"})
_CALENDAR = frozenset({"month", "fiscal_year"})

#: Which dimensions each measure can be broken down by (the rest answer 422).
ALLOWED: dict[str, frozenset[str]] = {
    "revenue": _CUSTOMER_DIMENSIONS | _CALENDAR | {"product_category"},
    "order_count": _CUSTOMER_DIMENSIONS | _CALENDAR | {"product_category"},
    "deal_count": _CUSTOMER_DIMENSIONS | _CALENDAR | {"owner", "stage"},
    "deal_amount": _CUSTOMER_DIMENSIONS | _CALENDAR | {"owner", "stage"},
    "ticket_count": _CUSTOMER_DIMENSIONS | _CALENDAR | {"ticket_category"},
    "complaint_count": _CUSTOMER_DIMENSIONS | _CALENDAR | {"ticket_category"},
    "average_csat": _CUSTOMER_DIMENSIONS | _CALENDAR | {"ticket_category"},
}


class PivotError(ValueError):
    """A measure × dimension combination that makes no sense; names the parameter at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Source:
    """Where a measure's facts live: FROM clause, their date, per-dimension columns, the partial aggregates."""

    from_sql: str
    subject_sql: str
    date_sql: str
    columns: dict[str, str]
    partials: tuple[str, ...]
    kind: Literal["money", "count", "average"]


def _source(measure: Measure, by_category: bool) -> Source:
    customer_columns = {
        "prefecture": "c.prefecture",
        "industry": "c.industry",
        "rank": "c.rank",
    }
    kind: Literal["money", "count", "average"]
    match measure:
        case "revenue" | "order_count" if by_category:
            from_sql = "fact_order_lines l"
            partial = "sum(l.line_amount - l.reversed)"
            if measure == "order_count":
                from_sql += " JOIN fact_orders o ON o.order_id = l.order_id"
                partial = "count(DISTINCT l.order_id) FILTER (WHERE o.status = 'placed')"
            columns = {**customer_columns, "product_category": "l.category"}
            kind = "money" if measure == "revenue" else "count"
            return Source(from_sql, "l.subject_id", "l.order_date", columns, (partial,), kind)
        case "revenue" | "order_count":
            partial = (
                "sum(o.total - o.reversed)" if measure == "revenue" else "count(*) FILTER (WHERE o.status = 'placed')"
            )
            kind = "money" if measure == "revenue" else "count"
            return Source("fact_orders o", "o.subject_id", "o.order_date", customer_columns, (partial,), kind)
        case "deal_count" | "deal_amount":
            partial = "count(*)" if measure == "deal_count" else "sum(d.amount)"
            columns = {**customer_columns, "owner": "d.owner", "stage": "d.stage"}
            kind = "count" if measure == "deal_count" else "money"
            return Source("fact_deals d", "d.subject_id", "d.opened_on", columns, (partial,), kind)
        case "ticket_count" | "complaint_count" | "average_csat":
            partials = {
                "ticket_count": ("count(*)",),
                "complaint_count": ("count(*) FILTER (WHERE k.kind = 'complaint')",),
                "average_csat": ("sum(k.csat)", "count(k.csat)"),
            }[measure]
            columns = {**customer_columns, "ticket_category": "k.category"}
            kind = "average" if measure == "average_csat" else "count"
            ticket_date = "(k.opened_at AT TIME ZONE 'Asia/Tokyo')::date"
            return Source("fact_tickets k", "k.subject_id", ticket_date, columns, partials, kind)


def _scope_clause(alias: str, scope: RecordScope, sql: Sql) -> str:
    match alias:
        case "d":
            return scope.sql("d.owner", "d.team", sql)
        case "k":
            return scope.sql("k.assignee", "k.team", sql)
        case "o":
            mine = scope.sql("x.owner", "x.team", sql)
            return f"EXISTS (SELECT 1 FROM fact_deals x WHERE x.deal_id = o.deal_id AND {mine})"
        case _:
            mine = scope.sql("x.owner", "x.team", sql)
            return (
                "EXISTS (SELECT 1 FROM fact_orders y JOIN fact_deals x ON x.deal_id = y.deal_id"
                f" WHERE y.order_id = l.order_id AND {mine})"
            )


def fiscal_year_of(month: date, fiscal_month: int) -> int:
    """The fiscal year a month belongs to, named by the calendar year the fiscal year ends in."""
    return month.year if month.month <= fiscal_month else month.year + 1


@dataclass(frozen=True)
class _Key:
    """How one dimension is grouped in SQL and labelled in Python."""

    sql: tuple[str, ...]
    label: Callable[[tuple[Any, ...]], str | None]


def _key(dimension: str, source: Source) -> _Key:
    # date_trunc on a timestamp without time zone: on a date it would go through timestamptz and the
    # session time zone for every row (twice as slow, and the month of a date does not depend on it).
    month = f"date_trunc('month', ({source.date_sql})::timestamp)::date"
    if dimension == "month":
        return _Key((month,), lambda v: v[0].strftime("%Y-%m"))
    if dimension == "fiscal_year":
        return _Key(
            (month, f"coalesce(c.fiscal_month, {DEFAULT_FISCAL_MONTH})"),
            lambda v: str(fiscal_year_of(v[0], int(v[1]))),
        )
    column = source.subject_sql if dimension == "customer" else source.columns[dimension]
    return _Key((column,), lambda v: None if v[0] is None else str(v[0]))


def _needs_totals(f: CustomerFilter) -> bool:
    return (
        f.has_open_complaint is not None
        or f.no_purchase_since is not None
        or f.min_amount is not None
        or f.max_amount is not None
        or f.last_contact_before is not None
    )


class _Cell:
    """Additive partials of one cell or total."""

    __slots__ = ("count", "total")

    def __init__(self) -> None:
        self.total = Decimal(0)
        self.count = 0

    def add(self, kind: str, values: tuple[Any, ...]) -> None:
        if kind == "average":
            self.total += Decimal(values[0] or 0)
            self.count += int(values[1] or 0)
        elif kind == "count":
            self.count += int(values[0] or 0)
        else:
            self.total += Decimal(values[0] or 0)

    def value(self, kind: str) -> str | int | None:
        if kind == "count":
            return self.count
        if kind == "average":
            if not self.count:
                return None
            return str((self.total / self.count).quantize(_CSAT_PLACES, rounding=ROUND_HALF_EVEN))
        return str(self.total)


_CSAT_PLACES = Decimal("0.01")


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
        scope: RecordScope | None = None,
    ) -> dict[str, Any]:
        """Cells, row and column totals and the grand total, exact (see the module docstring).

        With a ``scope`` only the caller's (or their team's) records are aggregated.
        """
        for field, dimension in (("rows", rows), ("columns", columns)):
            if dimension is not None and dimension not in ALLOWED[measure]:
                raise PivotError(field, f"{measure} cannot be broken down by {dimension}")
        if columns is not None and columns == rows:
            raise PivotError("columns", "columns must differ from rows")
        if date_from and date_to and date_from > date_to:
            raise PivotError("to", "to is before from")
        f = customers or CustomerFilter()
        source = _source(measure, "product_category" in (rows, columns))
        # The customer table is joined only when a dimension or a filter needs it. Without a filter it is
        # a LEFT JOIN: facts of a customer whose registration has not arrived yet still count (under an
        # empty prefecture, the default fiscal month), so every pivot of a measure has the same total.
        # Facts of merged customers already point at their survivor (subject_id).
        sql = Sql()
        from_sql = source.from_sql
        if f != CustomerFilter():
            from_sql += f" JOIN fact_customers c ON c.customer_id = {source.subject_sql}"
            if _needs_totals(f):
                from_sql += " LEFT JOIN fact_customer_totals t ON t.customer_id = c.customer_id"
            filter_sql(f, sql)
        elif {rows, columns} & {"prefecture", "industry", "rank", "fiscal_year"}:
            from_sql += f" LEFT JOIN fact_customers c ON c.customer_id = {source.subject_sql}"
        sql.clauses.append(f"{source.date_sql} IS NOT NULL")
        if scope is not None:
            sql.clauses.append(_scope_clause(source.subject_sql.split(".")[0], scope, sql))
        if date_from:
            sql.clauses.append(f"{source.date_sql} >= {sql.arg(date_from)}::date")
        if date_to:
            sql.clauses.append(f"{source.date_sql} <= {sql.arg(date_to)}::date")
        row_key = _key(rows, source)
        col_key = _key(columns, source) if columns else _Key((), lambda v: None)
        keys = [*row_key.sql, *col_key.sql]
        query = (
            f"SELECT {', '.join(keys)}, {', '.join(source.partials)}"
            f" FROM {from_sql} WHERE {sql.where()} GROUP BY {', '.join(keys)}"
        )
        # Customer names for the labels are read beside the report (not joined per fact row).
        names = (
            asyncio.ensure_future(
                self.pool.fetch("SELECT customer_id::text AS id, name FROM fact_customers WHERE name IS NOT NULL")
            )
            if "customer" in (rows, columns)
            else None
        )
        try:
            records = await self.pool.fetch(query, *sql.args)
        except BaseException:
            if names is not None:
                names.cancel()
            raise
        nr, nk, np_ = len(row_key.sql), len(keys), len(source.partials)
        cells: dict[tuple[str | None, str | None], _Cell] = defaultdict(_Cell)
        row_totals: dict[str | None, _Cell] = defaultdict(_Cell)
        col_totals: dict[str | None, _Cell] = defaultdict(_Cell)
        grand = _Cell()
        labels: dict[str, str | None] = {}
        for rec in records:
            values = tuple(rec)
            r = row_key.label(values[:nr])
            c = col_key.label(values[nr:nk])
            partials = values[nk : nk + np_]
            targets = (cells[(r, c)], row_totals[r], col_totals[c], grand) if columns else (row_totals[r], grand)
            for target in targets:
                target.add(source.kind, partials)
        if measure == "order_count" and "product_category" in (rows, columns):
            # An order holding two categories is one order: totals across categories are distinct counts.
            other = columns if rows == "product_category" else rows
            across = col_totals if rows == "product_category" else row_totals
            await self._distinct_totals(query, sql.args, other, keys, row_key, col_key, rows, across, grand)
        if names is not None:
            keys_shown = row_totals if rows == "customer" else col_totals
            labels = {r["id"]: r["name"] for r in await names if r["id"] in keys_shown}
        return _shape(measure, rows, columns, source.kind, cells, row_totals, col_totals, grand, labels)

    async def _distinct_totals(
        self,
        query: str,
        args: list[Any],
        other: str | None,
        keys: list[str],
        row_key: _Key,
        col_key: _Key,
        rows: str,
        across: dict[str | None, _Cell],
        grand: _Cell,
    ) -> None:
        other_key = col_key if rows == "product_category" else row_key
        grouped = ", ".join(other_key.sql)
        distinct = "count(DISTINCT l.order_id) FILTER (WHERE o.status = 'placed')"
        body = query[query.index(" FROM ") : query.index(" GROUP BY ")]
        if other is not None:
            for rec in await self.pool.fetch(f"SELECT {grouped}, {distinct}{body} GROUP BY {grouped}", *args):
                values = tuple(rec)
                cell = across[other_key.label(values[:-1])]
                cell.count = int(values[-1] or 0)
        grand.count = int(await self.pool.fetchval(f"SELECT {distinct}{body}", *args) or 0)


def _shape(
    measure: str,
    rows: str,
    columns: str | None,
    kind: str,
    cells: dict[tuple[str | None, str | None], _Cell],
    row_totals: dict[str | None, _Cell],
    col_totals: dict[str | None, _Cell],
    grand: _Cell,
    labels: dict[str, str | None],
) -> dict[str, Any]:
    row_keys = sorted(row_totals, key=lambda k: _key_order(rows, k))
    col_keys = sorted(col_totals, key=lambda k: _key_order(columns or "", k)) if columns else []
    if columns:
        matrix = [[cells[(r, c)].value(kind) if (r, c) in cells else None for c in col_keys] for r in row_keys]
        totals_rows = [row_totals[r].value(kind) for r in row_keys]
    else:
        totals_rows = [row_totals[r].value(kind) for r in row_keys]
        matrix = [[v] for v in totals_rows]
    return {
        "measure": measure,
        "rows_dimension": rows,
        "columns_dimension": columns,
        "rows": row_keys,
        "columns": col_keys,
        "cells": matrix,
        "totals": {
            "rows": totals_rows,
            "columns": [col_totals[c].value(kind) for c in col_keys],
            "grand": grand.value(kind) if row_keys else (0 if kind == "count" else None),
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
    if report["columns_dimension"]:
        writer.writerow([corner, *(cell(c) for c in report["columns"]), "total"])
        for key, values, total in zip(report["rows"], report["cells"], report["totals"]["rows"], strict=True):
            writer.writerow([cell(key), *(cell(v) for v in values), cell(total)])
        writer.writerow(["total", *(cell(v) for v in report["totals"]["columns"]), cell(report["totals"]["grand"])])
    else:
        writer.writerow([corner, report["measure"]])
        for key, total in zip(report["rows"], report["totals"]["rows"], strict=True):
            writer.writerow([cell(key), cell(total)])
        writer.writerow(["total", cell(report["totals"]["grand"])])
    return out.getvalue()
