"""`GET /reports/pivot`: one measure by rows and optional columns, as JSON or CSV (`Accept: text/csv`)."""

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any

import asyncpg
from crm_http.auth import Actor
from crm_http.policy import Grant, Policy, default_policy, permission
from crm_http.problems import unprocessable
from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse, Response
from pydantic import ConfigDict, Field

from crm_projections.pivots.queries import Dimension, Measure, PivotError, PivotQueries, to_csv
from crm_projections.search.api import facts_pool
from crm_projections.search.filters import CustomerFilter, FilterError
from crm_projections.search.scope import RecordScope

ActorDependency = Callable[..., Awaitable[Actor]]


class PivotParams(CustomerFilter):
    """The report's shape, its date range (on the measure's own date) and any customer filter of `GET /customers`."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    measure: Measure = Field(description="revenue, order_count, deal_count, deal_amount, ticket_count, …")
    rows: Dimension
    columns: Dimension | None = None
    date_from: date | None = Field(default=None, alias="from", description="From this date (inclusive)")
    date_to: date | None = Field(default=None, alias="to", description="To this date (inclusive)")

    def customers(self) -> CustomerFilter:
        """Only the customer filters."""
        return CustomerFilter.model_validate(
            self.model_dump(exclude={"measure", "rows", "columns", "date_from", "date_to"})
        )


def pivots_router(current_actor: ActorDependency, policy: Policy | None = None) -> APIRouter:
    """The pivot endpoint, behind `pivot.read` and the measure's own permission (`pivot.revenue`, …)."""
    router = APIRouter(tags=["reports"])
    rules = policy or default_policy()
    MayRead = Annotated[Grant, Depends(permission(rules, current_actor, "pivot.read"))]  # noqa: N806

    @router.get(
        "/reports/pivot",
        responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
        response_model=None,
    )
    async def pivot(
        params: Annotated[PivotParams, Query()],
        grant: MayRead,
        pool: Annotated[asyncpg.Pool, Depends(facts_pool)],
        accept: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Revenue by prefecture × fiscal year and the like; money as decimal strings, CSAT to two places.

        A caller whose grant is limited to their own or their team's records aggregates only those.
        """
        measure_grant = rules.authorize(grant.actor, f"pivot.{params.measure}")
        try:
            params.check()
            report: dict[str, Any] = await PivotQueries(pool).pivot(
                params.measure,
                params.rows,
                params.columns,
                params.date_from,
                params.date_to,
                params.customers(),
                scope=RecordScope.of(grant, measure_grant),
            )
        except (PivotError, FilterError) as exc:
            raise unprocessable(exc.field, exc.message) from None
        if accept and "text/csv" in accept:
            return Response(to_csv(report), media_type="text/csv; charset=utf-8")
        return JSONResponse(report)

    return router
