"""HTTP endpoints of the timeline: GET /customers/{id}/timeline and /customers/{id}/timeline/verify."""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from crm_http.auth import Actor
from crm_http.problems import Problem, not_found, unprocessable
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse

from crm_projections.privacy.store import personal_fields_of_items, record_personal_read
from crm_projections.timeline.merges import resolve
from crm_projections.timeline.queries import BadCursor, TimelineFilter, TimelineQueries
from crm_projections.timeline.verify import SourceUnavailable, customer_entries, verify_entries

ActorDependency = Callable[..., Awaitable[Actor]]

MERGED_REDIRECT: dict[int | str, dict[str, Any]] = {
    308: {"description": "The customer was merged into another record: Location names the survivor"}
}


def language(accept_language: str | None) -> str:
    """ja or en from an Accept-Language header (en by default)."""
    if not accept_language:
        return "en"
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("ja"):
            return "ja"
        if tag.startswith("en"):
            return "en"
    return "en"


def survivor_redirect(request: Request, asked: UUID, survivor: UUID) -> RedirectResponse:
    """308 to the same resource of the survivor, query string kept."""
    path = request.url.path.replace(str(asked), str(survivor), 1)
    query = request.url.query
    return RedirectResponse(path + (f"?{query}" if query else ""), status_code=308)


def timeline_router(current_actor: ActorDependency) -> APIRouter:
    """The timeline endpoints; they read app.state.timeline and app.state.sources."""
    router = APIRouter(tags=["timeline"])

    @router.get("/customers/{customer_id}/timeline", responses=MERGED_REDIRECT, response_model=None)
    async def timeline(
        request: Request,
        customer_id: UUID,
        actor: Annotated[Actor, Depends(current_actor)],
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
        service: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        q: Annotated[
            str | None,
            Query(max_length=200, description="Free text: substring of the summary or any readable data value"),
        ] = None,
        accept_language: Annotated[str | None, Header()] = None,
    ) -> JSONResponse | RedirectResponse:
        """The customer's events from all services (and from records merged into it), newest first by effective time."""
        queries: TimelineQueries = request.app.state.timeline
        resolution = await resolve(queries.pool, customer_id)
        if resolution.redirected:
            return survivor_redirect(request, customer_id, resolution.survivor)
        try:
            page = await queries.page(
                customer_id,
                limit=limit,
                cursor=cursor,
                filters=TimelineFilter(service=service, type=type, since=since, until=until, text=q),
                language=language(accept_language),
                members=resolution.members,
            )
        except BadCursor:
            raise unprocessable("cursor", "cursor is not valid") from None
        if not page["items"] and cursor is None and not await queries.exists(customer_id):
            raise not_found(f"customer {customer_id} has no timeline")
        page["merged_from"] = [str(m) for m in resolution.members[1:]]
        await record_personal_read(request, actor, resolution.members, personal_fields_of_items(page["items"]))
        return JSONResponse(page)  # already JSON-ready: skips FastAPI's jsonable_encoder walk

    @router.get("/customers/{customer_id}/timeline/verify", responses=MERGED_REDIRECT, response_model=None)
    async def verify(
        request: Request, customer_id: UUID, actor: Annotated[Actor, Depends(current_actor)]
    ) -> dict[str, Any] | RedirectResponse:
        """Recompute the hash chains behind the customer's timeline from the services' event stores.

        Answers `{"valid": true, ...}`, or `valid: false` with `first_broken` naming the service,
        stream, version and event whose proof fails: a broken chain in the source, or a timeline
        entry that is not a faithful copy of its source event.
        """
        queries: TimelineQueries = request.app.state.timeline
        resolution = await resolve(queries.pool, customer_id)
        if resolution.redirected:
            return survivor_redirect(request, customer_id, resolution.survivor)
        entries = await customer_entries(queries.pool, resolution.members)
        if not entries:
            raise not_found(f"customer {customer_id} has no timeline")
        try:
            verdict = await verify_entries(entries, request.app.state.sources)
        except SourceUnavailable as exc:
            raise Problem(503, "Source event store unavailable", str(exc)) from None
        return {"customer_id": str(customer_id), **verdict.to_json()}

    return router
