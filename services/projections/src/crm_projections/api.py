"""Query API of the read models (port 8000)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from crm_eventstore.host import open_keyring, token_verifier
from crm_eventstore.store import create_pool
from crm_http.auth import Actor, TokenVerifier, actor_dependency
from crm_http.probes import install_probes
from crm_http.problems import install_problem_handlers, not_found, unprocessable
from fastapi import Depends, FastAPI, Header, Query

from crm_projections.settings import ProjectionsSettings
from crm_projections.timeline.queries import BadCursor, TimelineFilter, TimelineQueries


def _language(accept_language: str | None) -> str:
    if not accept_language:
        return "en"
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("ja"):
            return "ja"
        if tag.startswith("en"):
            return "en"
    return "en"


def create_app(verifier: TokenVerifier, lifespan: Any = None) -> FastAPI:
    """The query API; app.state.timeline is bound by the lifespan."""
    app = FastAPI(
        title="CRM query API",
        version="1.0.0",
        description="Read models built from every service's events. Every query needs a bearer JWT.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)

    async def database_ready() -> None:
        await app.state.timeline.pool.fetchval("SELECT 1")

    install_probes(app, "projections", {"database": database_ready})
    current_actor = actor_dependency(verifier)

    @app.get("/customers/{customer_id}/timeline")
    async def timeline(
        customer_id: UUID,
        actor: Annotated[Actor, Depends(current_actor)],
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
        service: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        accept_language: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """The customer's events from all services, newest first by effective time."""
        queries: TimelineQueries = app.state.timeline
        try:
            page = await queries.page(
                customer_id,
                limit=limit,
                cursor=cursor,
                filters=TimelineFilter(service=service, type=type, since=since, until=until),
                language=_language(accept_language),
            )
        except BadCursor:
            raise unprocessable("cursor", "cursor is not valid") from None
        if not page["items"] and cursor is None and not await queries.exists(customer_id):
            raise not_found(f"customer {customer_id} has no timeline")
        return page

    return app


def build_app() -> FastAPI:
    """The query API as run by uvicorn."""
    settings = ProjectionsSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.projections_database_url)
        keyring, keys_pool = await open_keyring(settings)
        app.state.timeline = TimelineQueries(pool, keyring)
        try:
            yield
        finally:
            await pool.close()
            await keys_pool.close()

    return create_app(token_verifier(settings), lifespan=lifespan)
