"""Wires the support service. Its domain arrives with its own issue; today it owns an empty event store."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from crm_eventstore.host import open_store
from crm_eventstore.settings import InfraSettings
from crm_http.probes import install_probes
from crm_http.problems import install_problem_handlers
from fastapi import FastAPI


def bootstrap() -> FastAPI:
    """The support HTTP app (health, readiness and metrics until its commands land)."""
    settings = InfraSettings()
    os.environ.setdefault("CRM_SUPPORT_DATABASE_URL", "postgresql://crm_support@127.0.0.1:5432/crm_support")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        handles = await open_store("support", settings, max_size=5)
        app.state.store = handles.store
        try:
            yield
        finally:
            await handles.close()

    app = FastAPI(title="CRM support service", version="0.1.0", lifespan=lifespan)
    install_problem_handlers(app)

    async def database_ready() -> None:
        await app.state.store.pool.fetchval("SELECT 1")

    install_probes(app, "support", {"database": database_ready})
    return app
