"""Segment endpoints: save a named customer filter, list segments, list a segment's members now."""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from crm_http.auth import Actor
from crm_http.policy import Grant, Policy, default_policy, permission
from crm_http.problems import conflict, not_found, unprocessable
from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_projections.search.api import facts_pool
from crm_projections.search.filters import DEFAULT_SORT, MAX_PAGE_SIZE, CustomerFilter, FilterError, SortKey
from crm_projections.search.queries import BadCursor, CustomerSearchQueries
from crm_projections.segments.store import DuplicateSegment, SegmentStore, segment_filter

ActorDependency = Callable[..., Awaitable[Actor]]


class SegmentIn(BaseModel):
    """A segment to save: a unique name and the `GET /customers` filters that define its members."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    filters: CustomerFilter = Field(default_factory=CustomerFilter)
    sort: SortKey = DEFAULT_SORT


def segments_router(current_actor: ActorDependency, policy: Policy | None = None) -> APIRouter:
    """The segment endpoints, behind the policy's `segment.create` and `segment.read` permissions."""
    router = APIRouter(tags=["segments"])
    rules = policy or default_policy()
    MayCreate = Annotated[Grant, Depends(permission(rules, current_actor, "segment.create"))]  # noqa: N806
    MayRead = Annotated[Grant, Depends(permission(rules, current_actor, "segment.read"))]  # noqa: N806
    Pool = Annotated[asyncpg.Pool, Depends(facts_pool)]  # noqa: N806

    async def _segment(pool: asyncpg.Pool, segment_id: UUID) -> dict[str, Any]:
        segment = await SegmentStore(pool).get(segment_id)
        if segment is None:
            raise not_found(f"segment {segment_id} does not exist")
        return segment

    @router.post("/segments", status_code=201)
    async def save_segment(body: SegmentIn, response: Response, grant: MayCreate, pool: Pool) -> dict[str, Any]:
        """Save a named segment; 409 if the name is taken."""
        try:
            body.filters.check()
        except FilterError as exc:
            raise unprocessable(f"filters.{exc.field}", exc.message) from None
        try:
            segment = await SegmentStore(pool).create(
                body.name, body.filters, body.sort, grant.actor.subject, datetime.now(UTC)
            )
        except DuplicateSegment as exc:
            raise conflict(f"a segment named {body.name!r} exists", segment_id=str(exc.existing_id)) from None
        response.headers["Location"] = f"/segments/{segment['segment_id']}"
        return segment

    @router.get("/segments")
    async def list_segments(grant: MayRead, pool: Pool) -> dict[str, Any]:
        """Every saved segment, by name."""
        return {"items": await SegmentStore(pool).all()}

    @router.get("/segments/{segment_id}")
    async def get_segment(segment_id: UUID, grant: MayRead, pool: Pool) -> dict[str, Any]:
        """One saved segment."""
        return await _segment(pool, segment_id)

    @router.get("/segments/{segment_id}/customers")
    async def segment_customers(
        segment_id: UUID,
        grant: MayRead,
        pool: Pool,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    ) -> dict[str, Any]:
        """The segment's members as of now (evaluated on every call), one page at a time."""
        segment = await _segment(pool, segment_id)
        try:
            page = await CustomerSearchQueries(pool).page(segment_filter(segment), segment["sort"], cursor, limit)
        except BadCursor as exc:
            raise unprocessable("cursor", str(exc)) from None
        return {"segment_id": segment["segment_id"], "name": segment["name"], **page}

    return router
