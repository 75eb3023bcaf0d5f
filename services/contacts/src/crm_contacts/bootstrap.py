"""Wires the contacts service: settings, event store, HTTP app."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from crm_eventstore.host import open_store, token_verifier
from fastapi import FastAPI

from crm_contacts.app.customers import CustomerCommands
from crm_contacts.app.directory import CustomerDirectory
from crm_contacts.entrypoints.http import create_app
from crm_contacts.settings import ContactsSettings


def bootstrap() -> FastAPI:
    """The contacts HTTP app with its event store opened on startup and closed on shutdown."""
    settings = ContactsSettings()
    os.environ.setdefault("CRM_CONTACTS_DATABASE_URL", settings.contacts_database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        handles = await open_store("contacts", settings)
        directory = CustomerDirectory(handles.store.pool)
        app.state.commands = CustomerCommands(handles.store, directory)
        app.state.directory = directory
        try:
            yield
        finally:
            await handles.close()

    return create_app(None, token_verifier(settings), lifespan=lifespan)
