"""Query API of the read models (port 8000)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from crm_eventstore.host import open_keyring, token_verifier
from crm_eventstore.store import create_pool
from crm_http.auth import TokenVerifier, actor_dependency
from crm_http.limits import install_api_limits
from crm_http.policy import default_policy, document_permissions
from crm_http.probes import install_probes
from crm_http.problems import install_problem_handlers
from fastapi import FastAPI

from crm_projections.customer360.api import customer360_router
from crm_projections.customer360.queries import Customer360Queries
from crm_projections.pipeline.api import pipeline_router
from crm_projections.pivots.api import pivots_router
from crm_projections.privacy.api import privacy_router
from crm_projections.rebuild.status import LagThresholds, check_ready
from crm_projections.search.api import customers_router
from crm_projections.segments.api import segments_router
from crm_projections.settings import ProjectionsSettings
from crm_projections.timeline.api import timeline_router
from crm_projections.timeline.queries import TimelineQueries
from crm_projections.timeline.sources import open_sources


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

    async def projections_ready() -> None:
        await check_ready(app.state.timeline.pool, app.state.lag_thresholds, datetime.now(UTC))

    app.state.lag_thresholds = LagThresholds()
    install_probes(app, "projections", {"database": database_ready, "projections": projections_ready})
    install_api_limits(app, verifier)
    current_actor = actor_dependency(verifier)
    app.include_router(customers_router(current_actor))
    app.include_router(segments_router(current_actor))
    app.include_router(pivots_router(current_actor))
    app.include_router(pipeline_router(current_actor))

    app.include_router(timeline_router(current_actor))
    app.include_router(customer360_router(current_actor))
    app.include_router(privacy_router(current_actor))
    # Each endpoint's permission, who holds it and its 403, in the OpenAPI (the routers all use the default policy).
    document_permissions(app, default_policy())

    return app


def build_app() -> FastAPI:
    """The query API as run by uvicorn."""
    settings = ProjectionsSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.projections_database_url)
        keyring, keys_pool = await open_keyring(settings)
        app.state.timeline = TimelineQueries(pool, keyring)
        app.state.facts_pool = pool
        app.state.customer360 = Customer360Queries(pool, keyring)
        app.state.sources = await open_sources(settings)
        app.state.lag_thresholds = LagThresholds(
            max_events=settings.projection_max_lag_events, max_seconds=settings.projection_max_lag_seconds
        )
        try:
            yield
        finally:
            await pool.close()
            await keys_pool.close()
            for source in app.state.sources.values():
                await source.close()

    return create_app(token_verifier(settings), lifespan=lifespan)
