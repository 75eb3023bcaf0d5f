"""`GET /customers`: search customers with combinable filters, sorting and cursor pagination."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import asyncpg
from crm_http.auth import Actor
from crm_http.policy import Grant, Policy, default_policy, permission
from crm_http.problems import unprocessable
from fastapi import APIRouter, Depends, Query, Request

from crm_projections.search.filters import CustomerSearch, FilterError
from crm_projections.search.queries import BadCursor, CustomerSearchQueries

ActorDependency = Callable[..., Awaitable[Actor]]


def facts_pool(request: Request) -> asyncpg.Pool:
    """The projections database pool the lifespan put on app.state.facts_pool."""
    pool: asyncpg.Pool = request.app.state.facts_pool
    return pool


def customers_router(current_actor: ActorDependency, policy: Policy | None = None) -> APIRouter:
    """The search endpoint, behind the policy's `segment.search` permission."""
    router = APIRouter(tags=["search"])
    rules = policy or default_policy()
    MaySearch = Annotated[Grant, Depends(permission(rules, current_actor, "segment.search"))]  # noqa: N806

    @router.get("/customers")
    async def search_customers(
        params: Annotated[CustomerSearch, Query()],
        grant: MaySearch,
        pool: Annotated[asyncpg.Pool, Depends(facts_pool)],
    ) -> dict[str, Any]:
        """Customers matching every filter given (merged duplicates left out), sorted, one page at a time."""
        try:
            params.check()
            return await CustomerSearchQueries(pool).page(params.filters(), params.sort, params.cursor, params.limit)
        except FilterError as exc:
            raise unprocessable(exc.field, exc.message) from None
        except BadCursor as exc:
            raise unprocessable("cursor", str(exc)) from None

    return router
