"""The sales pipeline from the deal facts: open deals by stage, won and lost per period."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, Literal

import asyncpg

from crm_projections.pivots.queries import STAGE_ORDER
from crm_projections.search.queries import Sql
from crm_projections.search.scope import RecordScope

Period = Literal["month", "quarter", "year"]

_PERIOD_SQL: dict[str, str] = {
    "month": "to_char(closed_on, 'YYYY-MM')",
    "quarter": "to_char(closed_on, 'YYYY-\"Q\"Q')",
    "year": "to_char(closed_on, 'YYYY')",
}
#: Stages of the default pipeline that are listed even with no open deal in them.
DEFAULT_STAGES = tuple(s for s in STAGE_ORDER if s not in ("won", "lost"))


def _stage_order(pipeline: str, stage: str) -> tuple[int, str, int, str]:
    known = pipeline == "default" and stage in DEFAULT_STAGES
    return (
        0 if pipeline == "default" else 1,
        pipeline,
        DEFAULT_STAGES.index(stage) if known else len(DEFAULT_STAGES),
        stage,
    )


class PipelineQueries:
    """Pipeline reads against the projections database (amounts are deal amounts, JPY, exact decimals)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def pipeline(
        self,
        owner: str | None = None,
        period: Period = "month",
        date_from: date | None = None,
        date_to: date | None = None,
        scope: RecordScope | None = None,
    ) -> dict[str, Any]:
        """Open deals by stage in pipeline order, and won/lost counts and amounts per period of their close date.

        With a ``scope`` only the caller's (or their team's) deals are counted.
        """

        def deals_where(sql: Sql) -> str:
            if owner is not None:
                sql.clauses.append(f"owner = {sql.arg(owner)}")
            if scope is not None:
                sql.clauses.append(scope.sql("owner", "team", sql))
            return sql.where()

        opened = Sql(clauses=["status = 'open'", "stage IS NOT NULL"])
        open_rows = await self.pool.fetch(
            "SELECT coalesce(pipeline, 'default') AS pipeline, stage, count(*) AS n, coalesce(sum(amount), 0) AS amount"
            f" FROM fact_deals WHERE {deals_where(opened)} GROUP BY 1, 2",
            *opened.args,
        )
        stages = {(r["pipeline"], r["stage"]): (int(r["n"]), Decimal(r["amount"])) for r in open_rows}
        for stage in DEFAULT_STAGES:
            stages.setdefault(("default", stage), (0, Decimal(0)))
        ordered = sorted(stages, key=lambda k: _stage_order(*k))
        closed = Sql(clauses=["status IN ('won', 'lost')", "closed_on IS NOT NULL"])
        if date_from:
            closed.clauses.append(f"closed_on >= {closed.arg(date_from)}::date")
        if date_to:
            closed.clauses.append(f"closed_on <= {closed.arg(date_to)}::date")
        closed_rows = await self.pool.fetch(
            f"SELECT {_PERIOD_SQL[period]} AS period,"
            " count(*) FILTER (WHERE status = 'won') AS won_count,"
            " coalesce(sum(amount) FILTER (WHERE status = 'won'), 0) AS won_amount,"
            " count(*) FILTER (WHERE status = 'lost') AS lost_count,"
            " coalesce(sum(amount) FILTER (WHERE status = 'lost'), 0) AS lost_amount"
            f" FROM fact_deals WHERE {deals_where(closed)} GROUP BY 1 ORDER BY 1",
            *closed.args,
        )
        periods = [
            {
                "period": r["period"],
                "won_count": int(r["won_count"]),
                "won_amount": str(r["won_amount"]),
                "lost_count": int(r["lost_count"]),
                "lost_amount": str(r["lost_amount"]),
            }
            for r in closed_rows
        ]
        return {
            "owner": owner,
            "open": {
                "stages": [
                    {"pipeline": p, "stage": s, "count": stages[(p, s)][0], "amount": str(stages[(p, s)][1])}
                    for p, s in ordered
                ],
                "count": sum(n for n, _ in stages.values()),
                "amount": str(sum((a for _, a in stages.values()), Decimal(0))),
            },
            "closed": {
                "period": period,
                "from": date_from.isoformat() if date_from else None,
                "to": date_to.isoformat() if date_to else None,
                "periods": periods,
                "won_count": sum(p["won_count"] for p in periods),
                "won_amount": str(sum((Decimal(r["won_amount"]) for r in closed_rows), Decimal(0))),
                "lost_count": sum(p["lost_count"] for p in periods),
                "lost_amount": str(sum((Decimal(r["lost_amount"]) for r in closed_rows), Decimal(0))),
            },
        }
