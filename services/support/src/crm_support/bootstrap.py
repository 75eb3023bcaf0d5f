"""Wires the support service: settings, event store, customer replica, SLA policy, HTTP app."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from crm_eventstore.host import open_store, token_verifier
from fastapi import FastAPI

from crm_support.app.tickets import TicketCommands
from crm_support.entrypoints.http import create_app
from crm_support.replica.queries import ReplicaDirectory
from crm_support.settings import SupportSettings
from crm_support.sla_clocks import PostgresSlaClocks


def bootstrap() -> FastAPI:
    """The support HTTP app with its event store opened on startup and closed on shutdown.

    The SLA scheduler does not run here but in the support worker (crm_support.entrypoints.worker),
    so scaling the API out never multiplies schedulers.
    """
    settings = SupportSettings()
    os.environ.setdefault("CRM_SUPPORT_DATABASE_URL", settings.support_database_url)
    policy = settings.sla_policy()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        handles = await open_store("support", settings)
        app.state.commands = TicketCommands(
            handles.store,
            customers=ReplicaDirectory(handles.pool),
            clocks=PostgresSlaClocks(handles.pool),
            policy=policy,
        )
        try:
            yield
        finally:
            await handles.close()

    return create_app(None, token_verifier(settings), lifespan=lifespan)
