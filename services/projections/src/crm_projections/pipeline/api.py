"""`GET /deals/pipeline`: open deals by stage with counts and amounts; won and lost per period."""

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any

import asyncpg
from crm_http.auth import Actor
from crm_http.policy import Grant, Policy, default_policy, permission
from crm_http.problems import unprocessable
from fastapi import APIRouter, Depends, Query

from crm_projections.pipeline.queries import Period, PipelineQueries
from crm_projections.search.api import facts_pool
from crm_projections.search.scope import RecordScope

ActorDependency = Callable[..., Awaitable[Actor]]


def pipeline_router(current_actor: ActorDependency, policy: Policy | None = None) -> APIRouter:
    """The pipeline endpoint, behind `pipeline.read`; a team or own scope counts only those deals."""
    router = APIRouter(tags=["deals"])
    rules = policy or default_policy()
    MayRead = Annotated[Grant, Depends(permission(rules, current_actor, "pipeline.read"))]  # noqa: N806

    @router.get("/deals/pipeline")
    async def deal_pipeline(
        grant: MayRead,
        pool: Annotated[asyncpg.Pool, Depends(facts_pool)],
        owner: Annotated[str | None, Query(description="Only deals owned by this staff member")] = None,
        period: Annotated[Period, Query(description="Won/lost grouped by month, quarter or year")] = "month",
        date_from: Annotated[date | None, Query(alias="from", description="Closed on or after")] = None,
        date_to: Annotated[date | None, Query(alias="to", description="Closed on or before")] = None,
    ) -> dict[str, Any]:
        """Open deals by stage (pipeline order) and won/lost counts and amounts per period of the close date."""
        if date_from and date_to and date_from > date_to:
            raise unprocessable("to", "to is before from")
        return await PipelineQueries(pool).pipeline(owner, period, date_from, date_to, RecordScope.of(grant))

    return router
