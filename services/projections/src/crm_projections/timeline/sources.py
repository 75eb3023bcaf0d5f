"""Read-only connections to the services' own event stores, for auditing the timeline against them."""

from __future__ import annotations

import asyncpg
from crm_eventstore.store import create_pool
from crm_schemas.registry import SERVICES

from crm_projections.settings import ProjectionsSettings


def source_urls(settings: ProjectionsSettings) -> dict[str, str]:
    """The configured event-store URL of each service (CRM_<SERVICE>_DATABASE_URL), when set."""
    urls = {
        "contacts": settings.contacts_database_url,
        "deals": settings.deals_database_url,
        "support": settings.support_database_url,
    }
    return {service: url for service, url in urls.items() if url and service in SERVICES}


async def open_sources(settings: ProjectionsSettings) -> dict[str, asyncpg.Pool]:
    """A small lazy pool per configured service event store (no connection is made until used)."""
    return {service: await create_pool(url, min_size=0, max_size=2) for service, url in source_urls(settings).items()}
