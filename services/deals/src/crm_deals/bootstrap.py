"""Wires the deals service: settings, event store, customer replica, deadlines, HTTP app."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from crm_eventstore.host import open_store, token_verifier
from fastapi import FastAPI

from crm_deals.app.commands import DealsCommands
from crm_deals.deadlines import PostgresDeadlines
from crm_deals.entrypoints.http import create_app
from crm_deals.replica.queries import ReplicaDirectory
from crm_deals.settings import DealsSettings


def bootstrap() -> FastAPI:
    """The deals HTTP app with its event store opened on startup and closed on shutdown.

    The scheduler (contract expiry, invoice overdue) does not run here but in the deals worker
    (crm_deals.entrypoints.worker), so scaling the API out never multiplies schedulers.
    """
    settings = DealsSettings()
    os.environ.setdefault("CRM_DEALS_DATABASE_URL", settings.deals_database_url)
    pipelines = settings.pipelines()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        handles = await open_store("deals", settings)
        app.state.commands = DealsCommands(
            handles.store,
            customers=ReplicaDirectory(handles.pool),
            deadlines=PostgresDeadlines(handles.pool),
            pipelines=pipelines,
        )
        try:
            yield
        finally:
            await handles.close()

    return create_app(None, token_verifier(settings), lifespan=lifespan)
